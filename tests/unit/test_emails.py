"""Every rule of the email registry, given events / when a ReserveEmail / then events or a rejection."""
from __future__ import annotations

import pytest

from given_when_then import NOW, Aggregate
from streams.domain import emails
from streams.domain.base import Reason
from streams.domain.emails import EmailReservation, EmailReserved, RecordEmailReservation, ReserveEmail

registry = Aggregate(emails.decide, emails.evolve, emails.react)

EMAIL = "ada@example.com"
EARLIER = NOW - 60_000


# Given events ------------------------------------------------------------------------------

def reserved_for(customer_id: str) -> EmailReserved:
    return EmailReserved(event_id=f"c-{customer_id}.reserve-email.0", aggregate_id=EMAIL, version=1,
                         command_id=f"c-{customer_id}.reserve-email", occurred_at=EARLIER, customer_id=customer_id)


# Commands ----------------------------------------------------------------------------------

def reserve(customer_id: str = "cust-1", create_command_id: str = "create-1", **overrides) -> ReserveEmail:
    fields = dict(command_id=f"{create_command_id}.reserve-email", email=EMAIL, customer_id=customer_id,
                  create_command_id=create_command_id, first_name="Ada", last_name="Lovelace",
                  phone="+44 20 7946 0000", address="12 St James's Sq")
    fields.update(overrides)
    return ReserveEmail(**fields)


def answer(command: ReserveEmail, accepted: bool, reason: str | None = None) -> RecordEmailReservation:
    return RecordEmailReservation(
        command_id=f"{command.command_id}.reply", customer_id=command.customer_id, email=command.email,
        accepted=accepted, reason=reason, first_name=command.first_name, last_name=command.last_name,
        phone=command.phone, address=command.address, settles_command_id=command.create_command_id,
        settles_command_type="CreateCustomer")


# Reserve -----------------------------------------------------------------------------------

def test_a_free_email_is_reserved_for_the_customer_at_version_1():
    registry.given().when(reserve()).then(
        EmailReserved(event_id="create-1.reserve-email.0", aggregate_id=EMAIL, version=1,
                      command_id="create-1.reserve-email", occurred_at=NOW, customer_id="cust-1"))


def test_a_reserved_email_belongs_to_the_customer():
    registry.given().when(reserve()).then_state(EmailReservation(email=EMAIL, customer_id="cust-1", version=1))


def test_the_email_is_the_aggregate_so_racing_customers_meet_on_one_partition():
    assert reserve("cust-1").aggregate_id == reserve("cust-2").aggregate_id == EMAIL


def test_the_same_customer_reserving_its_email_again_is_accepted_with_no_events():
    then = registry.given(reserved_for("cust-1")).when(reserve("cust-1", create_command_id="create-9"))
    then.then()
    assert then.state == EmailReservation(email=EMAIL, customer_id="cust-1", version=1)


def test_another_customer_reserving_a_taken_email_is_rejected_as_email_taken():
    registry.given(reserved_for("cust-1")).when(reserve("cust-2", create_command_id="create-2")).then_rejected(
        Reason.EMAIL_TAKEN, "email")


@pytest.mark.parametrize("overrides", [{"command_id": ""}, {"command_id": "x" * 401}, {"email": ""},
                                       {"email": "a" * 255}], ids=["no id", "over-long id", "no email", "long email"])
def test_a_reservation_without_a_usable_id_or_email_is_rejected_as_an_invalid_field(overrides):
    registry.given().when(reserve(**overrides)).then_rejected(Reason.INVALID_FIELD)


def test_a_reservation_id_derived_from_a_200_character_create_id_is_accepted():
    (event,) = registry.given().when(reserve(create_command_id="k" * 200)).events
    assert event.command_id == "k" * 200 + ".reserve-email"


# React: the reply settles the create command ----------------------------------------------------

def test_a_reserved_email_replies_accepted_and_settles_the_create_command():
    command = reserve()
    registry.given().when(command).then_issues(answer(command, accepted=True))


def test_the_reply_is_keyed_by_the_customer_and_settles_the_original_create_command():
    (reply,) = registry.given().when(reserve()).reactions
    assert (reply.command_id, reply.aggregate_id) == ("create-1.reserve-email.reply", "cust-1")
    assert (reply.settles_command_id, reply.settles_command_type) == ("create-1", "CreateCustomer")


def test_the_same_customer_again_replies_accepted():
    command = reserve("cust-1", create_command_id="create-9")
    registry.given(reserved_for("cust-1")).when(command).then_issues(answer(command, accepted=True))


def test_a_taken_email_replies_rejected_with_email_taken_and_settles_the_other_create_command():
    command = reserve("cust-2", create_command_id="create-2")
    registry.given(reserved_for("cust-1")).when(command).then_issues(
        answer(command, accepted=False, reason=Reason.EMAIL_TAKEN))


def test_the_reply_carries_the_customer_details_back_unchanged():
    command = reserve(phone=None, address=None)
    (reply,) = registry.given().when(command).reactions
    assert (reply.first_name, reply.last_name, reply.email, reply.phone, reply.address) == (
        "Ada", "Lovelace", EMAIL, None, None)
