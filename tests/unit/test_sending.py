"""`bank send` reads every line before it sends anything."""
import pytest

from streams.cli.sending import SendError, parse_lines


def test_a_line_whose_command_id_ends_like_a_saga_step_sends_nothing_and_names_the_line():
    lines = [(1, '{"type": "Deposit", "account_id": "A", "amount": "1.00", "command_id": "d1"}'),
             (2, '{"type": "Deposit", "account_id": "A", "amount": "1.00", "command_id": "T.debit"}')]
    with pytest.raises(SendError, match=r"line 2: command_id must not end with '\.debit'"):
        parse_lines(lines)


def test_a_line_with_an_ordinary_command_id_is_parsed():
    (command,) = parse_lines([(1, '{"type": "Deposit", "account_id": "A", "amount": "1.00", "command_id": "d1"}')])
    assert command.command_id == "d1"
