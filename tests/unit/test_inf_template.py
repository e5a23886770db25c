"""inf/WazabiEDR_Driver.inx against the primitive-driver INF rules (note 01, Microsoft's
"Creating a primitive driver" and INF AddService docs).

Independent of driverpipe.image.inf on purpose: a second, small reading of the same rules,
so a bug in the packager's lint cannot hide a bad template. This is not infverif
(Windows-only); it checks the rules we know infverif enforces plus our contracts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INX = REPO / "inf" / "WazabiEDR_Driver.inx"
SYS = "WazabiEDR_Driver.sys"
GUID = re.compile(r"^\{[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}$")
# Setup classes Microsoft reserves for system use (must not appear in a vendor INF).
RESERVED_CLASS_GUIDS = {
    "{8ecc055d-047f-11d1-a537-0000f8753ed1}",  # LegacyDriver
    "{4d36e97e-e325-11ce-bfc1-08002be10318}",  # Unknown
    "{4d36e966-e325-11ce-bfc1-08002be10318}",  # Computer
    "{4d36e976-e325-11ce-bfc1-08002be10318}",  # NoDriver
}
SPSVCINST_ASSOCSERVICE = 0x2


def decode(data: bytes) -> str:
    for bom, encoding in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"), (b"\xef\xbb\xbf", "utf-8")):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding)
    return data.decode("utf-8")


def strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return line[:i]
    return line


def sections(text: str) -> dict[str, list[tuple[str | None, str]]]:
    """Lower-cased section name -> (key or None, value) entries, comments removed."""
    out: dict[str, list[tuple[str | None, str]]] = {}
    current: list[tuple[str | None, str]] | None = None
    for raw in text.splitlines():
        line = strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = out.setdefault(line[1:-1].strip().lower(), [])
            continue
        if current is None:
            continue
        key, sep, value = line.partition("=")
        current.append((key.strip(), value.strip()) if sep else (None, line))
    return out


def get(entries: list[tuple[str | None, str]], key: str) -> str | None:
    return next((v for k, v in entries if k is not None and k.lower() == key.lower()), None)


def problems(text: str) -> list[str]:
    """Every rule the template breaks (empty: fine)."""
    found: list[str] = []
    inf = sections(text)
    version = inf.get("version", [])
    if (get(version, "Signature") or "").strip('"').lower() != "$windows nt$":
        found.append('Signature must be "$WINDOWS NT$"')
    for key in ("Class", "ClassGuid", "Provider", "CatalogFile", "DriverVer"):
        if not get(version, key):
            found.append(f"[Version] lacks {key}")
    guid = get(version, "ClassGuid") or ""
    if guid and not GUID.match(guid):
        found.append(f"ClassGuid {guid!r} is not a GUID")
    if guid.lower() in RESERVED_CLASS_GUIDS:
        found.append(f"ClassGuid {guid} is reserved for system use")
    if (get(version, "CatalogFile") or "").lower() != "wazabiedr_driver.cat":
        found.append("CatalogFile must be WazabiEDR_Driver.cat")
    driver_ver = get(version, "DriverVer")
    if driver_ver and not re.fullmatch(r"\d\d/\d\d/\d{4},\d+\.\d+\.\d+\.\d+", driver_ver.replace(" ", "")):
        found.append(f"DriverVer {driver_ver!r} is not MM/DD/YYYY,a.b.c.d")
    if get(version, "PnpLockdown") != "1":
        found.append("[Version] needs PnpLockdown = 1")

    if "manufacturer" in inf:
        found.append("[Manufacturer] present: not a primitive driver INF")
    for plain in ("defaultinstall", "defaultinstall.services"):
        if plain in inf:
            found.append(f"undecorated [{plain}] present (primitive drivers need .NT$ARCH$)")
    if "defaultuninstall" in inf and get(inf["defaultuninstall"], "LegacyUninstall") != "1":
        found.append("[DefaultUninstall] without LegacyUninstall=1")
    if any(name.endswith(".wdf") for name in inf):
        found.append("a .Wdf section is present (not used by this sc.exe-loaded service)")

    install = inf.get("defaultinstall.nt$arch$")
    services = inf.get("defaultinstall.nt$arch$.services")
    if install is None:
        found.append("no [DefaultInstall.NT$ARCH$]")
    if services is None:
        found.append("no [DefaultInstall.NT$ARCH$.Services]")
        services = []
    adds = [v for k, v in services if k and k.lower() == "addservice"]
    if len(adds) != 1:
        found.append(f"expected one AddService, found {len(adds)}")
    for add in adds:
        name, flags, section = ([f.strip() for f in add.split(",")] + ["", "", ""])[:3]
        if name != "WazabiEDR" or section != "WazabiEDR_Install":
            found.append(f"AddService must be WazabiEDR,,WazabiEDR_Install, got {add!r}")
        if flags and int(flags, 0) & SPSVCINST_ASSOCSERVICE:
            found.append("SPSVCINST_ASSOCSERVICE set: there is no device to associate")
    svc = inf.get("wazabiedr_install", [])
    for key, want in (("ServiceType", 1), ("StartType", 3), ("ErrorControl", 1)):
        got = get(svc, key)
        if got is None or int(got, 0) != want:
            found.append(f"[WazabiEDR_Install] {key} must be {want}, got {got}")
    if (get(svc, "ServiceBinary") or "").replace(" ", "").lower() != rf"%13%\{SYS}".lower():
        found.append(rf"ServiceBinary must be %13%\{SYS}")

    # Files: copied by the install section, to DIRID 13, from a declared disk.
    copy_sections = [v for k, v in (install or []) if k and k.lower() == "copyfiles"]
    copied = [e[1] for name in copy_sections for e in inf.get(name.lower(), []) if e[0] is None]
    if copied != [SYS]:
        found.append(f"CopyFiles must copy exactly {SYS}, copies {copied}")
    dest = inf.get("destinationdirs", [])
    for name in copy_sections:
        dirid = get(dest, name) or get(dest, "DefaultDestDir")
        if (dirid or "").split(",")[0].strip() != "13":
            found.append(f"CopyFiles section {name} does not go to DIRID 13")
    disks = {k for k, _ in inf.get("sourcedisksnames", []) if k}
    files = {k: v for k, v in inf.get("sourcedisksfiles", []) if k}
    if set(files) != {SYS}:
        found.append(f"[SourceDisksFiles] must list exactly {SYS}, lists {sorted(files)}")
    for file, value in files.items():
        if value.split(",")[0].strip() not in disks:
            found.append(f"{file} names a disk not in [SourceDisksNames]")

    defined = {k.lower() for k, _ in inf.get("strings", []) if k}
    for name, entries in inf.items():
        if name == "strings":
            continue
        for key, value in entries:
            for token in re.findall(r"%([^%]*)%", f"{key or ''}={value}"):
                if token and not token.isdigit() and token.lower() not in defined:
                    found.append(f"%{token}% is not defined in [Strings]")
    # stampinf -a replaces $ARCH$; any other $TOKEN$ would survive into the package.
    leftovers = set(re.findall(r"\$[A-Za-z_]+\$", text)) - {"$ARCH$"}
    if leftovers:
        found.append(f"placeholders stampinf does not fill here: {sorted(leftovers)}")
    return found


@pytest.fixture(scope="module")
def raw() -> bytes:
    return INX.read_bytes()


@pytest.fixture(scope="module")
def text(raw: bytes) -> str:
    return decode(raw)


def test_encoding_is_utf16le_with_bom_and_crlf(raw: bytes) -> None:
    assert raw.startswith(b"\xff\xfe"), "template must be UTF-16LE with BOM (like the WDK samples)"
    body = raw[2:].decode("utf-16-le")
    assert "\n" in body
    assert body.replace("\r\n", "").count("\n") == 0, "bare LF line ending"
    assert body.endswith("\r\n")


def test_template_follows_primitive_driver_rules(text: str) -> None:
    assert problems(text) == []


def test_class_is_system(text: str) -> None:
    version = sections(text)["version"]
    assert get(version, "Class") == "System"
    assert (get(version, "ClassGuid") or "").lower() == "{4d36e97d-e325-11ce-bfc1-08002be10318}"


def test_service_name_matches_pipeline_config(text: str) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["driverpipe"]
    assert config["service_name"] == "WazabiEDR"
    assert config["inx"] == "inf/WazabiEDR_Driver.inx"
    add = get(sections(text)["defaultinstall.nt$arch$.services"], "AddService") or ""
    assert add.split(",")[0].strip() == config["service_name"]


def test_stamped_amd64_sections_resolve(text: str) -> None:
    stamped = sections(text.replace("$ARCH$", "amd64"))
    assert "defaultinstall.ntamd64" in stamped
    assert "defaultinstall.ntamd64.services" in stamped


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t + "[Manufacturer]\r\n%P%=Std,NT$ARCH$\r\n", "[Manufacturer] present"),
        (lambda t: t.replace("AddService = WazabiEDR,,", "AddService = WazabiEDR,0x00000002,"), "SPSVCINST_ASSOCSERVICE"),
        (lambda t: t.replace("StartType     = 3", "StartType     = 2"), "StartType must be 3"),
        (lambda t: t.replace("DefaultDestDir = 13", "DefaultDestDir = 12"), "DIRID 13"),
        (lambda t: t.replace('ProviderName       = "WazabiEDR"', ""), "%ProviderName% is not defined"),
        (lambda t: re.sub(r"(?m)^CatalogFile.*\r\n", "", t), "lacks CatalogFile"),
        (lambda t: t.replace("[DefaultInstall.NT$ARCH$]", "[DefaultInstall]"), "undecorated"),
        (lambda t: t + "[DefaultInstall.NT$ARCH$.Wdf]\r\nKmdfService = WazabiEDR, W\r\n", ".Wdf section"),
        (lambda t: t.replace("PnpLockdown = 1", "PnpLockdown = 0"), "PnpLockdown"),
        (lambda t: t.replace("PnpLockdown = 1", "PnpLockdown = 1\r\nKmdf = $KMDFVERSION$"), "placeholders"),
    ],
)
def test_checker_catches_each_broken_rule(text: str, mutate, expected: str) -> None:
    """The rules above are not vacuous: each known mistake is reported."""
    mutated = mutate(text)
    assert mutated != text
    assert any(expected in p for p in problems(mutated)), problems(mutated)
