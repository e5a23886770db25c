"""Device checks declared in config: the schema's rules, CTL_CODE, the requests, and the one evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driverpipe.core import config
from driverpipe.core.errors import ConfigError, ExitCode
from driverpipe.targets import devicechecks
from driverpipe.targets.state import DeployStepFailed

BASE_CHECK = '[[tool.driverpipe.device_check]]\nname = "probe"\nop = "ioctl"\ncode = 0x222000\n'


def with_checks(project: Path, tables: str) -> Path:
    """The project's pyproject.toml with its own device_check tables replaced by `tables`."""
    path = project / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    kept = []
    skipping = False
    for line in text.splitlines():
        if line.startswith("[[tool.driverpipe.device_check]]"):
            skipping = True
            continue
        if skipping and line.startswith("["):
            skipping = False
        if not skipping:
            kept.append(line)
    path.write_text("\n".join(kept) + "\n" + tables, encoding="utf-8")
    return path


def test_wazabiedr_declares_todays_smoke_test_as_config(project: Path) -> None:
    checks = devicechecks.from_config(config.load().project)
    assert [(c.name, c.op, c.code, c.output_length, c.expect_error) for c in checks] == [
        ("ioctl-unhandled", "ioctl", 0x222000, 64, 1),
        ("read-unhandled", "read", 0, 16, 1),
    ]


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ({"device_type": 0x22, "function": 0x800, "method": "buffered", "access": "any"}, 0x222000),
        ({"device_type": 0x22, "function": 0x801, "method": "in_direct", "access": "any"}, 0x222005),
        ({"device_type": 0x22, "function": 0x802, "method": "out_direct", "access": "read_write"}, 0x22E00A),
        ({"device_type": 0x12, "function": 0x0, "method": "neither", "access": "read"}, 0x124003),
    ],
)
def test_ctl_code_is_winioctl_h(parts: dict[str, object], code: int) -> None:
    assert devicechecks.ctl_code(parts) == code


@pytest.mark.parametrize(
    ("tables", "needle"),
    [
        ('[[tool.driverpipe.device_check]]\nop = "read"\n', "device_check[0].name: required value is missing"),
        ('[[tool.driverpipe.device_check]]\nname = "a/b"\nop = "read"\n', "device_check[0].name: 'a/b' is not a plain name"),
        ('[[tool.driverpipe.device_check]]\nname = "x"\nop = "seek"\n', "device_check[0].op: 'seek' is not allowed"),
        ('[[tool.driverpipe.device_check]]\nname = "x"\nop = "ioctl"\n', "device_check[0].code: an ioctl check needs exactly one of code and ctl_code"),
        (BASE_CHECK + "ctl_code = { function = 0x801 }\n", "device_check[0].code: an ioctl check needs exactly one of code and ctl_code"),
        (BASE_CHECK + 'input = "0g"\n', "device_check[0].input: '0g' is not hex bytes"),
        (BASE_CHECK + 'expect_output = "abc"\n', "device_check[0].expect_output: 'abc' is not hex bytes"),
        (BASE_CHECK + "output_length = -1\n", "device_check[0].output_length: -1 is below 0"),
        (BASE_CHECK + "colour = 1\n", "device_check[0].colour: unknown key"),
        (BASE_CHECK + BASE_CHECK, "device_check[1].name: 'probe' is used by an earlier check"),
        ('[[tool.driverpipe.device_check]]\nname = "r"\nop = "read"\ncode = 1\n', "device_check[0].code: only an ioctl check has code"),
        ('[[tool.driverpipe.device_check]]\nname = "w"\nop = "write"\noutput_length = 4\n', "device_check[0].output_length: a write check reads nothing back"),
        (BASE_CHECK.replace("code = 0x222000\n", 'ctl_code = { method = "sideways" }\n'), "device_check[0].ctl_code.method: 'sideways' is not allowed"),
        ("[tool.driverpipe]\ndevice_check = 3\n", "device_check: expected an array of tables"),
    ],
)
def test_a_bad_device_check_is_one_line_naming_it(project: Path, tables: str, needle: str) -> None:
    if tables.startswith("[tool.driverpipe]\n"):
        path = project / "pyproject.toml"
        path.write_text(path.read_text(encoding="utf-8").replace("[tool.driverpipe]\n", tables, 1), encoding="utf-8")
        with_checks(project, "")
    else:
        with_checks(project, tables)
    with pytest.raises(ConfigError) as info:
        config.load()
    line = info.value.one_line()
    assert needle in line and "\n" not in line, line
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_a_table_of_checks_becomes_the_agent_request_and_the_script_parameter(project: Path) -> None:
    with_checks(
        project,
        BASE_CHECK.replace('name = "probe"', 'name = "echo"') + 'input = "0A 0b"\noutput_length = 2\nexpect_output = "0a0b"\n'
        '[[tool.driverpipe.device_check]]\nname = "w"\nop = "write"\ninput = "ff"\nexpect_returned = 1\n',
    )
    checks = devicechecks.from_config(config.load().project)
    assert devicechecks.agent_fields("\\\\.\\X", checks) == ["checks", "\\\\.\\X", "i,2236416,2,0a0b,echo", "w,0,0,ff,w"]
    assert json.loads(devicechecks.checks_json(checks)) == [
        {"name": "echo", "op": "ioctl", "code": 0x222000, "input": "0a0b", "output_length": 2},
        {"name": "w", "op": "write", "code": 0, "input": "ff", "output_length": 0},
    ]


def _checks() -> list[devicechecks.DeviceCheck]:
    return [
        devicechecks.DeviceCheck("echo", "ioctl", 0x222000, "0a0b", 2, 0, "0a0b", 2),
        devicechecks.DeviceCheck("read-unhandled", "read", 0, "", 16, 1, None, None),
    ]


def test_the_evaluator_passes_what_matches_with_one_line_per_check() -> None:
    data = {"device": "\\\\.\\X", "open_error": 0, "steps": [{"error": 0, "returned": 2, "output": "0A0B"}, {"error": 1, "returned": 0}], "close_error": 0}
    result = devicechecks.parse_result(data, _checks(), source="test")
    assert result.ok
    assert result.lines == ["device check echo: ok: DeviceIoControl(0x00222000) -> 0, 2 bytes", "device check read-unhandled: ok: ReadFile -> 1, 0 bytes"]
    assert result.describe("\\\\.\\X") == "CreateFileW ok, DeviceIoControl -> 0, ReadFile -> 1, CloseHandle -> 0"
    assert [s["name"] for s in result.steps] == ["echo", "read-unhandled"]


def test_the_evaluator_names_each_mismatch() -> None:
    data = {"open_error": 0, "steps": [{"error": 0, "returned": 1, "output": "0a"}, {"error": 0, "returned": 0, "output": ""}], "close_error": 6}
    result = devicechecks.parse_result(data, _checks(), source="test")
    assert not result.ok
    assert result.lines[0] == "device check echo: FAIL: DeviceIoControl(0x00222000): 1 bytes returned, expected 2, output 0a, expected 0a0b"
    assert "read-unhandled: Win32 error 0 (success), expected 1 (ERROR_INVALID_FUNCTION)" in result.describe("X")
    assert "CloseHandle failed with Win32 error 6" in result.describe("X")


def test_a_device_that_does_not_open_runs_no_check() -> None:
    result = devicechecks.parse_result({"device": "X", "open_error": 2, "steps": []}, _checks(), source="test")
    assert not result.ok and result.open_error == 2
    assert result.lines == ["device check echo: not run (the device did not open)", "device check read-unhandled: not run (the device did not open)"]
    assert "ERROR_FILE_NOT_FOUND" in result.describe("X")


@pytest.mark.parametrize("data", [{"steps": []}, {"open_error": "x"}, {"open_error": 0, "steps": [{"error": 0}]}, "garbage"])
def test_a_malformed_answer_is_a_failed_step(data: object) -> None:
    with pytest.raises(DeployStepFailed):
        devicechecks.parse_result(data, _checks(), source="test")


def test_the_agents_limits_are_config_errors_not_refused_requests(project: Path) -> None:
    with_checks(project, BASE_CHECK + f'input = "{"00" * 65537}"\n')
    with pytest.raises(ConfigError, match=r"device_check\[0\]\.input: more than 65536 bytes"):
        config.load()
    with_checks(project, BASE_CHECK + "output_length = 65537\n")
    with pytest.raises(ConfigError, match=r"device_check\[0\]\.output_length: 65537 is above 65536"):
        config.load()
    many = "".join(f'[[tool.driverpipe.device_check]]\nname = "r{i}"\nop = "read"\n' for i in range(65))
    with_checks(project, many)
    with pytest.raises(ConfigError, match=r"device_check\[64\]\.name: more than 64 device checks"):
        config.load()
