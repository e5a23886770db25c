"""INF/INX reading, stamping (what stampinf does) and a primitive-driver lint.

Used on hosts without the WDK, so the package step can stamp the driver's .inx
itself: $ARCH$, $KMDFVERSION$ and $KMDFCOINSTALLERVERSION$ substituted, and in
[Version] `DriverVer = MM/DD/YYYY,a.b.c.d` and `CatalogFile = <name>.cat` set
(replaced in place when present, else appended to the section). The file keeps
its encoding (UTF-16LE/BE with BOM, UTF-8 with or without BOM) and line endings.

Syntax handled: `;` comments outside double quotes, `""` inside quotes, a
trailing backslash continuing a line, case-insensitive section and key names,
repeated sections (merged). Where stampinf's exact output differs (spacing,
where a new directive lands in [Version]) is unverified: no WDK here.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import write_atomic

BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


# ----------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Encoded:
    text: str
    encoding: str  # "utf-8", "utf-16-le" or "utf-16-be"
    bom: bool


def decode(data: bytes, where: str = "INF") -> Encoded:
    """Bytes of an INF/INX -> text, remembering the encoding to write it back the same way."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return Encoded(data[len(bom) :].decode(encoding), encoding, True)
            except UnicodeDecodeError:
                break
    else:
        if len(data) >= 4 and (data[1::2][:2] == b"\0\0" or data[0::2][:2] == b"\0\0"):
            raise ConfigError(f"{where}: looks like UTF-16 without a byte-order mark", "save it as UTF-16LE with BOM (as the WDK samples are) or UTF-8")
        try:
            return Encoded(data.decode("utf-8"), "utf-8", False)
        except UnicodeDecodeError:
            pass
    raise ConfigError(f"{where}: not valid UTF-8 or UTF-16 (with BOM) text", "save it as UTF-16LE with BOM or UTF-8")


def encode(text: str, like: Encoded) -> bytes:
    body = text.encode(like.encoding)
    if not like.bom:
        return body
    return {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[like.encoding] + body


# ----------------------------------------------------------------------------- parsing


def strip_comment(line: str) -> str:
    """The line without its `;` comment (a `;` inside double quotes is text)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted  # "" inside a quoted string toggles twice: still quoted
        elif ch == ";" and not quoted:
            return line[:i]
    return line


def _split_eq(text: str) -> tuple[str | None, str]:
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted:
            return text[:i].strip(), text[i + 1 :].strip()
    return None, text.strip()


@dataclass
class Entry:
    key: str | None  # None for a bare line ("file.sys")
    value: str
    line: int  # 1-based physical line where the logical line starts
    first: int  # index of the first physical line
    end: int  # index after the last physical line (continuations)


@dataclass
class Section:
    name: str
    line: int
    header_index: int
    entries: list[Entry] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        for entry in self.entries:
            if entry.key is not None and entry.key.lower() == key.lower():
                return entry.value
        return None

    def all(self, key: str) -> list[Entry]:
        return [e for e in self.entries if e.key is not None and e.key.lower() == key.lower()]


@dataclass
class Inf:
    sections: dict[str, Section]  # lower-cased name -> merged section

    def section(self, name: str) -> Section | None:
        return self.sections.get(name.lower())


def parse(text: str) -> Inf:
    """Sections and entries of an INF (comments stripped, continuations joined)."""
    lines = text.splitlines()
    sections: dict[str, Section] = {}
    current: Section | None = None
    i = 0
    while i < len(lines):
        first = i
        body = strip_comment(lines[i]).rstrip()
        # A trailing backslash joins the next physical line (a continuation); comments are
        # stripped again on the joined text so quotes spanning the break are respected.
        while body.endswith("\\") and i + 1 < len(lines):
            i += 1
            body = strip_comment(body[:-1] + lines[i].lstrip()).rstrip()
        i += 1
        stripped = body.strip()
        if not stripped:
            continue
        if stripped.startswith("["):
            close = stripped.find("]")
            name = stripped[1:close].strip() if close > 0 else stripped[1:].strip()
            current = sections.get(name.lower())
            if current is None:
                current = Section(name, first + 1, first)
                sections[name.lower()] = current
            continue
        if current is None:
            continue  # text before the first section is ignored by Setup
        key, value = _split_eq(stripped)
        current.entries.append(Entry(key, value, first + 1, first, i))
    return Inf(sections)


# ----------------------------------------------------------------------------- stamping


def driver_ver(date: _dt.date, version: str) -> str:
    """DriverVer value as stampinf writes it: MM/DD/YYYY,a.b.c.d."""
    return f"{date.month:02d}/{date.day:02d}/{date.year:04d},{check_version(version)}"


def check_version(version: str) -> str:
    parts = version.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) <= 65535 for p in parts):
        raise ConfigError(f"driver version {version!r} is not a.b.c.d with numbers 0-65535", 'set build.driver_version = "1.0.0.0" (or fix the crate version)')
    return ".".join(str(int(p)) for p in parts)


def parse_stampinf_date(text: str) -> _dt.date:
    """A STAMPINF_DATE value (MM/DD/YYYY) as a date."""
    try:
        return _dt.datetime.strptime(text.strip(), "%m/%d/%Y").date()
    except ValueError:
        raise ConfigError(f"STAMPINF_DATE={text!r} is not MM/DD/YYYY", "unset STAMPINF_DATE or fix its value") from None


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def stamp_text(text: str, *, arch: str, catalog: str, date: _dt.date, version: str, kmdf: tuple[int, int] | None = None) -> str:
    """Apply stampinf's substitutions (-a, -k, -c, -d, -v) to INX text."""
    out = re.sub(r"\$ARCH\$", arch, text, flags=re.I)
    if kmdf is not None:
        major, minor = kmdf
        # -k 1.33 gives $KMDFVERSION$ = 1.33 and $KMDFCOINSTALLERVERSION$ = 01033 (stampinf docs).
        out = re.sub(r"\$KMDFCOINSTALLERVERSION\$", f"{major:02d}{minor:03d}", out, flags=re.I)
        out = re.sub(r"\$KMDFVERSION\$", f"{major}.{minor}", out, flags=re.I)
    out = set_directive(out, "Version", "DriverVer", driver_ver(date, version))
    return set_directive(out, "Version", "CatalogFile", catalog)


def set_directive(text: str, section_name: str, key: str, value: str) -> str:
    """Set `key = value` in a section: replace the first occurrence (drop repeats) or append it."""
    nl = _newline(text)
    ends_with_newline = text.endswith(("\n", "\r"))
    lines = text.splitlines()
    inf = parse(text)
    section = inf.section(section_name)
    if section is None:
        raise ConfigError(f"INF has no [{section_name}] section", f"add [{section_name}] with Signature, Class, ClassGuid and Provider")
    new_line = f"{key} = {value}"
    existing = section.all(key)
    if existing:
        head = existing[0]
        for entry in reversed(existing[1:]):
            del lines[entry.first : entry.end]
        lines[head.first : head.end] = [new_line]
    else:
        # After the section's last entry; a merged section appends to its last block.
        at = section.entries[-1].end if section.entries else section.header_index + 1
        lines.insert(at, new_line)
    result = nl.join(lines)
    return result + nl if ends_with_newline else result


def stamp_file(path: Path, **kwargs: object) -> None:
    """Stamp an INF in place (atomically), keeping its encoding and line endings."""
    enc = decode(path.read_bytes(), str(path))
    stamped = stamp_text(enc.text, **kwargs)  # type: ignore[arg-type]
    write_atomic(path, encode(stamped, enc))


# ----------------------------------------------------------------------------- lint


@dataclass(frozen=True)
class LintProblem:
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


ARCH_SUFFIX = re.compile(r"^defaultinstall\.nt(\$arch\$|amd64|arm64|x86)$", re.I)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip(), 0)
    except ValueError:
        return None


def _string_tokens(value: str) -> Iterable[str]:
    for match in re.finditer(r"%([^%]*)%", value):
        name = match.group(1)
        if name and not name.isdigit():  # %13% is a DIRID, %% a literal percent
            yield name


def lint(inf_text: str, *, stamped: bool = True) -> list[LintProblem]:
    """Primitive or root-enumerated PnP driver INF rules that infverif enforces; empty list: fine.

    stamped=False lints an .inx template: DriverVer and CatalogFile are left to stamping.
    """
    inf = parse(inf_text)
    problems: list[LintProblem] = []

    def add(line: int, rule: str, message: str) -> None:
        problems.append(LintProblem(line, rule, message))

    version = inf.section("Version")
    if version is None:
        add(0, "version", "no [Version] section")
    else:
        for key in ("Signature", "Class", "ClassGuid", "Provider"):
            if version.get(key) is None:
                add(version.line, "version", f"[Version] lacks {key}")
        if stamped and version.get("CatalogFile") is None:
            add(version.line, "catalog-file", "[Version] lacks CatalogFile (infverif 1233): the package cannot be signed")
        if stamped and version.get("DriverVer") is None:
            add(version.line, "driver-ver", "[Version] lacks DriverVer")
    manufacturer = inf.section("Manufacturer")
    plain = inf.section("DefaultInstall")
    primitive = [s for s in inf.sections.values() if ARCH_SUFFIX.match(s.name)]
    if manufacturer is not None and (primitive or plain is not None):
        add(manufacturer.line, "manufacturer", "[Manufacturer] found next to [DefaultInstall]: infverif 1212 (a driver INF is primitive or PnP, not both)")
    installs = install_sections(inf)
    if manufacturer is not None and not installs:
        add(manufacturer.line, "models", "[Manufacturer] leads to no models section naming an existing install section (DDInstall)")
    elif not installs:
        where = plain.line if plain else 0
        add(where, "default-install", "no [DefaultInstall.NT$ARCH$] section (a primitive driver INF needs the architecture-decorated form)")
    for install in installs:
        services = inf.section(install.name + ".Services")
        if services is None:
            add(install.line, "services", f"no [{install.name}.Services] section with AddService")
            continue
        adds = services.all("AddService")
        if not adds:
            add(services.line, "add-service", f"[{services.name}] has no AddService line")
        for entry in adds:
            fields = [f.strip() for f in entry.value.split(",")]
            svc_section_name = fields[2] if len(fields) > 2 else ""
            svc = inf.section(svc_section_name) if svc_section_name else None
            if svc is None:
                add(entry.line, "add-service", f"AddService names install section {svc_section_name or '(none)'!r}, which does not exist")
                continue
            for key, want, meaning in (("ServiceType", 1, "kernel driver"), ("StartType", 3, "demand start"), ("ErrorControl", 1, "normal")):
                got = svc.get(key)
                if _int(got) != want:
                    add(svc.line, "service-values", f"[{svc.name}] {key} must be {want} ({meaning}), got {got if got is not None else 'nothing'}")
            binary = svc.get("ServiceBinary") or ""
            if not binary.replace(" ", "").lower().startswith("%13%\\"):
                add(svc.line, "service-values", f"[{svc.name}] ServiceBinary must be %13%\\<driver>.sys (DIRID 13), got {binary or 'nothing'}")
            listed = [f.lower() for f in catalog_files(inf_text)]
            file = binary.replace("/", "\\").rsplit("\\", 1)[-1].strip()
            if file and listed and file.lower() not in listed:
                add(svc.line, "service-binary", f"[{svc.name}] ServiceBinary names {file}, which [SourceDisksFiles] does not list")
    uninstall = inf.section("DefaultUninstall")
    if uninstall is not None and _int(uninstall.get("LegacyUninstall")) != 1:
        add(uninstall.line, "default-uninstall", "[DefaultUninstall] is only allowed with LegacyUninstall=1")
    defined = {e.key.lower() for name, s in inf.sections.items() if name == "strings" or name.startswith("strings.") for e in s.entries if e.key}
    seen: set[str] = set()
    for name, section in inf.sections.items():
        if name == "strings" or name.startswith("strings."):
            continue
        for entry in section.entries:
            for token in _string_tokens(f"{entry.key or ''}={entry.value}"):
                if token.lower() not in defined and token.lower() not in seen:
                    seen.add(token.lower())
                    add(entry.line, "strings", f"%{token}% is not defined in [Strings]")
    return sorted(problems, key=lambda p: (p.line, p.rule))


def _fields(value: str) -> list[str]:
    return [f.strip() for f in value.split(",")]


def _decorated(inf: Inf, base: str) -> Section | None:
    """The install section Setup picks for x64: base.NT$ARCH$ / .NTamd64 / .NT / base."""
    for suffix in (".NT$ARCH$", ".NTamd64", ".NT", ""):
        found = inf.section(base + suffix)
        if found is not None:
            return found
    return None


def _model_lines(inf: Inf) -> list[Entry]:
    """The lines of the models sections a PnP INF's [Manufacturer] names (`desc = DDInstall, hwid[, ...]`)."""
    manufacturer = inf.section("Manufacturer")
    lines: list[Entry] = []
    for entry in manufacturer.entries if manufacturer else []:
        models, *decorations = _fields(entry.value)
        names = [f"{models}.{d}" for d in decorations if d] or [models]
        for name in names:
            section = inf.section(name) or inf.section(models)
            lines += [m for m in (section.entries if section else []) if m not in lines]
    return lines


def install_sections(inf: Inf) -> list[Section]:
    """The sections that install the driver: [DefaultInstall.NT<arch>] of a primitive INF, or the
    DDInstall sections a PnP INF's [Manufacturer] -> models sections name (root-enumerated devices)."""
    if inf.section("Manufacturer") is None:
        return [s for s in inf.sections.values() if ARCH_SUFFIX.match(s.name)]
    found: list[Section] = []
    for model in _model_lines(inf):
        base = _fields(model.value)[0]
        install = _decorated(inf, base) if base else None
        if install is not None and install not in found:
            found.append(install)
    return found


def root_hardware_id(inf_text: str) -> str | None:
    """A PnP INF's first root-enumerated hardware id (`Root\\X`, which a device node is created for);
    None for a primitive INF or one whose devices some bus enumerates."""
    for model in _model_lines(parse(inf_text)):
        ids = _fields(model.value)[1:]
        if ids and ids[0].lower().startswith("root\\"):
            return ids[0]
    return None


def install_section_name(inf_text: str) -> str | None:
    """The section to hand to InstallHinfSection: DefaultInstall's decorated form, or the first DDInstall."""
    sections = install_sections(parse(inf_text))
    return sections[0].name if sections else None


def service_names(inf_text: str) -> list[str]:
    """The services the INF adds (AddService's first field in each install section's .Services)."""
    inf = parse(inf_text)
    names: list[str] = []
    for install in install_sections(inf):
        services = inf.section(install.name + ".Services")
        for entry in services.all("AddService") if services else []:
            name = _fields(entry.value)[0].strip('"')
            if name and name not in names:
                names.append(name)
    return names


def driver_binary(inf_text: str) -> str | None:
    """The driver's file name: the one .sys [SourceDisksFiles] lists (None: none or several)."""
    binaries = [f for f in catalog_files(inf_text) if f.lower().endswith(".sys")]
    return binaries[0] if len(binaries) == 1 else None


def catalog_files(inf_text: str) -> list[str]:
    """File names listed in [SourceDisksFiles] / [SourceDisksFiles.<arch>] (what inf2cat catalogs besides the INF)."""
    names: list[str] = []
    for name, section in parse(inf_text).sections.items():
        if name == "sourcedisksfiles" or name.startswith("sourcedisksfiles."):
            for entry in section.entries:
                file = (entry.key if entry.key is not None else entry.value).strip()
                if file and file.lower() not in (n.lower() for n in names):
                    names.append(file)
    return names
