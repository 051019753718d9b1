"""Every rule of the Customer aggregate, given events / when a command / then events or a rejection."""
from __future__ import annotations

import pytest

from given_when_then import NOW, Aggregate
from streams.domain import customers, emails
from streams.domain.base import DEFERRED, Reason
from streams.domain.customers import (
    AddToAccount,
    CreateCustomer,
    Customer,
    CustomerCreated,
    RemoveToAccount,
    ToAccount,
    ToAccountAdded,
    ToAccountRemoved,
)
from streams.domain.emails import EmailReservation, RecordEmailReservation, ReserveEmail

customer = Aggregate(customers.decide, customers.evolve, customers.react)

CUST = "cust-1"
EARLIER = NOW - 60_000


# Given events ------------------------------------------------------------------------------

def created(version: int = 1) -> CustomerCreated:
    return CustomerCreated(event_id="create.0", aggregate_id=CUST, version=version, command_id="create",
                           occurred_at=EARLIER, first_name="Ada", last_name="Lovelace",
                           email="ada@example.com", phone="+44 20 7946 0000", address="12 St James's Sq")


def added(account_id: str, version: int) -> ToAccountAdded:
    return ToAccountAdded(event_id=f"add{version}.0", aggregate_id=CUST, version=version,
                          command_id=f"add{version}", occurred_at=EARLIER, account_id=account_id,
                          title=f"title of {account_id}", owner=f"owner of {account_id}")


def removed(account_id: str, version: int) -> ToAccountRemoved:
    return ToAccountRemoved(event_id=f"rm{version}.0", aggregate_id=CUST, version=version,
                            command_id=f"rm{version}", occurred_at=EARLIER, account_id=account_id)


# Commands ----------------------------------------------------------------------------------

def create(**overrides) -> CreateCustomer:
    fields = dict(command_id="cmd-create", customer_id=CUST, first_name="Ada", last_name="Lovelace",
                  email="ada@example.com", phone="+44 20 7946 0000", address="12 St James's Sq")
    fields.update(overrides)
    return CreateCustomer(**fields)


def add(account_id: str = "acc-9", **overrides) -> AddToAccount:
    return AddToAccount(**{"command_id": "cmd-add", "customer_id": CUST, "account_id": account_id,
                           "title": "Rent", "owner": "Landlord", **overrides})


def remove(account_id: str = "acc-9", **overrides) -> RemoveToAccount:
    return RemoveToAccount(**{"command_id": "cmd-rm", "customer_id": CUST, "account_id": account_id, **overrides})


# Replies from the email registry ---------------------------------------------------------------

def reservation(command: CreateCustomer, accepted: bool = True, reason: str | None = None,
                **overrides) -> RecordEmailReservation:
    """The registry's answer to `command`'s ReserveEmail, built by hand (the email already normalized)."""
    fields = dict(command_id=f"{command.command_id}.reserve-email.reply", customer_id=command.customer_id,
                  email=command.email.strip().lower(), accepted=accepted,
                  reason=reason if reason is not None or accepted else Reason.EMAIL_TAKEN,
                  first_name=command.first_name, last_name=command.last_name, phone=command.phone,
                  address=command.address, settles_command_id=command.command_id,
                  settles_command_type="CreateCustomer")
    fields.update(overrides)
    return RecordEmailReservation(**fields)


def created_through_the_registry(command: CreateCustomer, now_ms: int = NOW) -> CustomerCreated:
    """decide → DEFERRED, react → ReserveEmail, the real registry's answer, decide → CustomerCreated."""
    assert customers.decide(None, command, now_ms) is DEFERRED
    (reserve,) = customers.react(None, command, DEFERRED)
    result = emails.decide(None, reserve, now_ms)
    (reply,) = emails.react(None, reserve, result)
    (event,) = customers.decide(None, reply, now_ms)
    return event


# Create ------------------------------------------------------------------------------------

def test_creating_a_new_customer_is_deferred_until_the_registry_has_reserved_the_email():
    customer.given().when(create()).then_deferred()


def test_creating_a_new_customer_asks_the_registry_to_reserve_its_email_for_it():
    customer.given().when(create()).then_issues(
        ReserveEmail(command_id="cmd-create.reserve-email", email="ada@example.com", customer_id=CUST,
                     create_command_id="cmd-create", first_name="Ada", last_name="Lovelace",
                     phone="+44 20 7946 0000", address="12 St James's Sq"))


def test_a_deferred_create_changes_no_state():
    then = customer.given().when(create())
    assert then.result is DEFERRED and then.state_before is None


def test_a_reserved_email_creates_the_customer_at_version_1_under_the_original_create_command():
    customer.given().when(reservation(create())).then(
        CustomerCreated(event_id="cmd-create.0", aggregate_id=CUST, version=1, command_id="cmd-create",
                        occurred_at=NOW, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                        phone="+44 20 7946 0000", address="12 St James's Sq"))


def test_creating_a_new_customer_through_the_real_registry_emits_customer_created_at_version_1():
    assert created_through_the_registry(create()) == CustomerCreated(
        event_id="cmd-create.0", aggregate_id=CUST, version=1, command_id="cmd-create", occurred_at=NOW,
        first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+44 20 7946 0000",
        address="12 St James's Sq")


def test_the_registry_answers_exactly_the_reply_the_customer_expects():
    command = create(email="  Ada@Example.COM ")
    (reserve,) = customers.react(None, command, DEFERRED)
    assert emails.react(None, reserve, emails.decide(None, reserve, NOW)) == (reservation(command),)


def test_a_created_customer_has_no_to_accounts_and_version_1():
    customer.given().when(reservation(create())).then_state(
        Customer(customer_id=CUST, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                 phone="+44 20 7946 0000", address="12 St James's Sq", to_accounts=(), version=1))


def test_the_email_is_normalized_to_lower_case_without_surrounding_blanks():
    command = create(email="  Ada.Lovelace@Example.COM ")
    (reserve,) = customer.given().when(command).reactions
    assert (reserve.email, reserve.aggregate_id) == ("ada.lovelace@example.com", "ada.lovelace@example.com")
    assert created_through_the_registry(command).email == "ada.lovelace@example.com"


def test_empty_phone_and_address_are_stored_as_absent():
    event = created_through_the_registry(create(phone="", address=""))
    assert (event.phone, event.address) == (None, None)


def test_phone_and_address_are_optional():
    event = created_through_the_registry(create(phone=None, address=None))
    assert (event.phone, event.address) == (None, None)


def test_a_reserved_email_for_a_customer_created_meanwhile_is_rejected_as_already_existing():
    # Two creates of one customer id with different emails: both reserve, the second reply finds the customer.
    customer.given(created()).when(reservation(create(command_id="cmd-2", email="other@example.com"))) \
        .then_rejected(Reason.ALREADY_EXISTS)


def test_an_email_taken_by_another_customer_rejects_the_create_as_email_taken():
    customer.given().when(reservation(create(), accepted=False, reason=Reason.EMAIL_TAKEN)).then_rejected(
        Reason.EMAIL_TAKEN, "email")


def test_a_refused_reservation_without_a_reason_is_still_email_taken():
    customer.given().when(reservation(create(), accepted=False, reason=None)).then_rejected(
        Reason.EMAIL_TAKEN, "email")


def test_an_email_taken_rejection_even_on_an_existing_customer_changes_nothing():
    then = customer.given(created()).when(reservation(create(), accepted=False))
    then.then_rejected(Reason.EMAIL_TAKEN, "email")
    then.then_issues()


def test_a_reply_from_the_registry_issues_nothing_more():
    customer.given().when(reservation(create())).then_issues()
    customer.given().when(reservation(create(), accepted=False)).then_issues()


@pytest.mark.parametrize(("existing", "command", "reason"), [
    (True, create(), Reason.ALREADY_EXISTS),
    (False, create(email="not-an-email"), Reason.INVALID_FIELD),
    (False, create(expected_version=3), Reason.VERSION_CONFLICT),
], ids=["already exists", "invalid email", "version conflict"])
def test_a_rejected_create_reserves_no_email(existing, command, reason):
    then = (customer.given(created()) if existing else customer.given()).when(command)
    then.then_rejected(reason)
    then.then_issues()


def test_other_customer_commands_issue_nothing():
    customer.given(created()).when(add()).then_issues()
    customer.given(created(), added("acc-9", 2)).when(remove()).then_issues()


def test_creating_a_customer_that_already_exists_is_rejected_as_already_existing():
    customer.given(created()).when(create()).then_rejected(Reason.ALREADY_EXISTS)


@pytest.mark.parametrize("email", [
    "ada.example.com", "@example.com", "ada@", "ada@localhost", "ada lovelace@example.com", "ada@exa mple.com",
])
def test_an_invalid_email_is_rejected_as_an_invalid_field(email):
    customer.given().when(create(email=email)).then_rejected(Reason.INVALID_FIELD, "email")


@pytest.mark.parametrize("email", ["", None])
def test_a_missing_email_is_rejected_as_an_invalid_field(email):
    customer.given().when(create(email=email)).then_rejected(Reason.INVALID_FIELD, "email")


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize("missing", ["", None])
def test_a_missing_name_is_rejected_as_an_invalid_field(field, missing):
    customer.given().when(create(**{field: missing})).then_rejected(Reason.INVALID_FIELD, field)


@pytest.mark.parametrize(("field", "too_long"), [
    ("first_name", "x" * 201),
    ("last_name", "x" * 201),
    ("email", "a" * 243 + "@example.com"),  # 255 characters
    ("phone", "1" * 51),
    ("address", "x" * 1001),
])
def test_an_over_long_field_is_rejected_as_an_invalid_field(field, too_long):
    customer.given().when(create(**{field: too_long})).then_rejected(Reason.INVALID_FIELD, field)


def test_fields_at_their_length_limits_are_accepted():
    email = "a" * 242 + "@example.com"  # 254 characters
    command = create(customer_id="c" * 200, command_id="k" * 200, first_name="f" * 200, last_name="l" * 200,
                     email=email, phone="1" * 50, address="x" * 1000)
    customer.given().when(command).then_deferred()
    event = created_through_the_registry(command)
    assert (len(event.first_name), len(event.last_name), len(event.email), len(event.phone),
            len(event.address)) == (200, 200, 254, 50, 1000)


def test_creating_with_expected_version_0_is_accepted():
    customer.given().when(create(expected_version=0)).then_deferred()
    (event,) = customer.given().when(reservation(create(expected_version=0))).events
    assert event.version == 1


def test_creating_with_an_expected_version_other_than_0_is_a_version_conflict():
    customer.given().when(create(expected_version=3)).then_rejected(Reason.VERSION_CONFLICT, "expected_version")


# Add a to-account --------------------------------------------------------------------------

def test_adding_a_to_account_emits_to_account_added_at_the_next_version():
    customer.given(created()).when(add("acc-9")).then(
        ToAccountAdded(event_id="cmd-add.0", aggregate_id=CUST, version=2, command_id="cmd-add",
                       occurred_at=NOW, account_id="acc-9", title="Rent", owner="Landlord"))


def test_an_added_to_account_is_listed_after_the_earlier_ones():
    state = customer.given(created(), added("acc-1", 2)).when(add("acc-9")).state
    assert state.to_accounts == (ToAccount(account_id="acc-1", title="title of acc-1", owner="owner of acc-1"),
                                 ToAccount(account_id="acc-9", title="Rent", owner="Landlord"))
    assert state.version == 3


def test_a_to_account_without_title_and_owner_gets_empty_ones():
    (event,) = customer.given(created()).when(add("acc-9", title=None, owner=None)).events
    assert (event.title, event.owner) == ("", "")


def test_adding_a_to_account_to_an_unknown_customer_is_rejected_as_customer_not_found():
    customer.given().when(add()).then_rejected(Reason.CUSTOMER_NOT_FOUND)


def test_adding_the_same_to_account_twice_is_rejected_as_to_account_exists():
    customer.given(created(), added("acc-9", 2)).when(add("acc-9")).then_rejected(Reason.TO_ACCOUNT_EXISTS)


@pytest.mark.parametrize("account_id", ["", None])
def test_adding_a_to_account_without_an_account_id_is_rejected_as_an_invalid_field(account_id):
    customer.given(created()).when(add(account_id)).then_rejected(Reason.INVALID_FIELD, "account_id")


def test_a_removed_to_account_can_be_added_again():
    (event,) = customer.given(created(), added("acc-9", 2), removed("acc-9", 3)).when(add("acc-9")).events
    assert (event.account_id, event.version) == ("acc-9", 4)


def test_adding_with_a_stale_expected_version_is_a_version_conflict():
    customer.given(created(), added("acc-1", 2)).when(add(expected_version=1)).then_rejected(
        Reason.VERSION_CONFLICT, "expected_version")


def test_adding_with_the_current_expected_version_is_accepted():
    (event,) = customer.given(created(), added("acc-1", 2)).when(add(expected_version=2)).events
    assert event.version == 3


# Remove a to-account -----------------------------------------------------------------------

def test_removing_a_to_account_emits_to_account_removed_and_drops_it():
    then = customer.given(created(), added("acc-1", 2), added("acc-9", 3)).when(remove("acc-1"))
    then.then(ToAccountRemoved(event_id="cmd-rm.0", aggregate_id=CUST, version=4, command_id="cmd-rm",
                               occurred_at=NOW, account_id="acc-1"))
    assert [a.account_id for a in then.state.to_accounts] == ["acc-9"]
    assert then.state.version == 4


def test_removing_an_unknown_to_account_is_rejected_as_to_account_not_found():
    customer.given(created(), added("acc-1", 2)).when(remove("acc-9")).then_rejected(Reason.TO_ACCOUNT_NOT_FOUND)


def test_removing_a_to_account_twice_is_rejected_as_to_account_not_found():
    customer.given(created(), added("acc-9", 2), removed("acc-9", 3)).when(remove("acc-9")).then_rejected(
        Reason.TO_ACCOUNT_NOT_FOUND)


def test_removing_a_to_account_of_an_unknown_customer_is_rejected_as_customer_not_found():
    customer.given().when(remove()).then_rejected(Reason.CUSTOMER_NOT_FOUND)


def test_removing_with_a_stale_expected_version_is_a_version_conflict():
    customer.given(created(), added("acc-9", 2)).when(remove(expected_version=1)).then_rejected(
        Reason.VERSION_CONFLICT, "expected_version")


def test_removing_with_the_current_expected_version_is_accepted():
    (event,) = customer.given(created(), added("acc-9", 2)).when(remove(expected_version=2)).events
    assert event.version == 3


# Envelopes ---------------------------------------------------------------------------------

def test_the_same_customer_command_twice_yields_the_same_events():
    given = customer.given(created())
    assert given.when(add(command_id="x")).events == given.when(add(command_id="x")).events
    assert given.when(add(command_id="x")).events[0].event_id == "x.0"


def test_customer_versions_are_gap_free_from_1_and_occur_at_now():
    events = customer.run(create(command_id="c1"), reservation(create(command_id="c1")), add("a", command_id="c2"),
                          add("b", command_id="c3"), remove("a", command_id="c4"), now_ms=12345)
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert [e.event_id for e in events] == ["c1.0", "c2.0", "c3.0", "c4.0"]
    assert {e.occurred_at for e in events} == {12345}


# Identifiers and to-account fields ---------------------------------------------------------

@pytest.mark.parametrize("command", [create(command_id=""), add(command_id=""), remove(command_id=""),
                                     create(command_id="x" * 201)],
                         ids=["create", "add", "remove", "over-long"])
def test_a_command_without_a_usable_command_id_is_rejected_as_an_invalid_field(command):
    customer.given(created(), added("acc-9", 2)).when(command).then_rejected(Reason.INVALID_FIELD, "command_id")


def test_a_customer_id_longer_than_200_characters_is_rejected():
    customer.given().when(create(customer_id="x" * 201)).then_rejected(Reason.INVALID_FIELD, "customer_id")


@pytest.mark.parametrize("field", ["title", "owner"])
def test_a_to_account_title_or_owner_longer_than_1000_characters_is_rejected(field):
    customer.given(created()).when(add(**{field: "x" * 1001})).then_rejected(Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("command", [add("x" * 201), remove("x" * 201)], ids=["add", "remove"])
def test_a_to_account_id_longer_than_200_characters_is_rejected(command):
    customer.given(created()).when(command).then_rejected(Reason.INVALID_FIELD, "account_id")


def test_creating_a_customer_under_an_id_the_email_reservation_derives_is_rejected_as_an_invalid_command_id():
    customer.given_nothing().when(create(command_id="other.reserve-email.reply")).then_rejected(
        Reason.INVALID_FIELD, "command_id")
