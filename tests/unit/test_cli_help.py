"""Every `bank` command and group explains itself: help= on each, and `--help` works everywhere."""
from __future__ import annotations

import click
from click.testing import CliRunner

from streams.cli.main import cli


def every_command(group: click.Group, path: tuple[str, ...] = ("bank",)):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, path + (name,))
        else:
            yield path + (name,), command


def test_every_command_and_group_has_help_text_and_every_option_too():
    missing = []
    for path, command in every_command(cli):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip() and not param.hidden:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == [], f"commands or options without help: {missing}"


def test_help_on_every_command_exits_0_and_shows_its_usage_and_text():
    runner = CliRunner()
    paths = [path for path, _ in every_command(cli)]
    assert {("bank", "status"), ("bank", "send"), ("bank", "kafka", "start"), ("bank", "bench")} <= set(paths)
    for path, command in every_command(cli):
        result = runner.invoke(cli, [*path[1:], "--help"], prog_name="bank")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: {' '.join(path)}"), (path, result.output[:200])
        assert command.help.split()[0] in result.output, path
