"""`bank send`: JSON lines in, commands onto Kafka, one JSON line out per command."""
from __future__ import annotations

from . import progress as bars
from ..contract.avro import Codec
from ..client import BankClient, OutcomeReader
from ..config import Settings
from ..domain.base import derived_id_error
from ..contract.jsonio import InputError, command_from_json, parse_json, to_plain

#: Commands that create their aggregate: their id is generated when the line leaves it out.
CREATION_ID_FIELDS = {"CreateCustomer": ("customer_id",), "OpenAccount": ("account_id",),
                      "TransferMoney": ("transfer_id",)}


class SendError(Exception):
    pass


def parse_lines(lines: list[tuple[int, str]]) -> list:
    """Every line parsed before anything is sent: one bad line sends nothing and names the line."""
    commands, errors = [], []
    for number, line in lines:
        try:
            data = parse_json(line)
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise InputError('each line must be a JSON object with a "type", e.g. {"type": "Deposit", ...}')
            command = command_from_json(data["type"], data, id_fields=CREATION_ID_FIELDS.get(data["type"], ()))
            if rejection := derived_id_error(command):  # the workers would refuse it: say so before sending
                raise InputError(rejection.message)
            commands.append(command)
        except InputError as exc:
            errors.append(f"line {number}: {exc.message}")
    if errors:
        raise SendError("nothing was sent:\n" + "\n".join(errors))
    return commands


def send_commands(settings: Settings, lines: list[tuple[int, str]], *, wait: bool, timeout: float):
    """Returns (results, whether any command failed or is still pending)."""
    commands = parse_lines(lines)
    codec = Codec()
    reader = OutcomeReader(settings, codec) if wait else None  # before sending, so no outcome slips past
    client = BankClient(settings, codec)
    try:
        with bars.bar(len(commands), "sending", every=max(1, len(commands) // 200)) as shown:
            sent = []
            for command in commands:
                sent.append(client.send(command))
                shown.tick()
            client.flush(timeout)
        results = [{"type": ids.command_type, "command_id": ids.command_id, "aggregate_id": ids.aggregate_id}
                   for ids in sent]
        failed = False
        if reader is not None:
            with bars.bar(len(sent), "waiting for outcomes") as shown:
                outcomes = reader.wait([ids.command_id for ids in sent], timeout, progress=shown.set)
            for result in results:
                outcome = outcomes.get(result["command_id"])
                if outcome is None:
                    result["status"] = "PENDING"
                    failed = True
                else:
                    result.update({k: v for k, v in to_plain(outcome).items()
                                   if v is not None and k not in result and k != "command_type"})
        return results, failed
    finally:
        if reader is not None:
            reader.close()
