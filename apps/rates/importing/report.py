"""The import report: one structure printed by the CLI, shown by the admin, kept as JSON."""

from dataclasses import asdict, dataclass, field

from apps.core.errors import DomainError

MAX_LISTED_ERRORS = 1000  # a broken million-row file must not make a million-line report
SAMPLES = 10
# PostgreSQL's jsonb sorts keys: the report prints the kinds of change in this order.
CHANGE_KINDS = ("new", "increased", "decreased", "terms_changed", "unchanged", "scheduled", "closed")


class FileError(DomainError):
    """A problem with the file as a whole (encoding, header, unknown column): nothing is read."""


class ImportRefused(DomainError):
    """The import cannot go on (errors without skip-invalid, a concurrent activation...)."""

    def __init__(self, message: str, *, report: "ImportReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ImportReport:
    table: str = ""
    mode: str = ""
    source: str = ""
    dry_run: bool = False
    state: str = ""
    rows_read: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    errors: list[dict] = field(default_factory=list)  # {"line": n | None, "message": str}
    errors_total: int = 0
    warnings: list[str] = field(default_factory=list)
    effective_from: str | None = None
    diff: dict = field(default_factory=dict)  # counts and samples per kind of change
    notice: dict = field(default_factory=dict)  # changes sooner than the supplier's notice
    margin: dict = field(default_factory=dict)  # sell prices below the new buy price
    version: int | None = None
    preview_version: int | None = None  # the live version the diff was computed against
    # Of the staged rows: some without a date ("undated"), earliest and latest date (ISO).
    starts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # phase -> seconds

    def error(self, line: int | None, message: str) -> None:
        """Record one error; messages read 'line 12: rate '-1' is negative'."""
        self.errors_total += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"line": line, "message": f"line {line}: {message}" if line else message})

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_LISTED_ERRORS:
            self.warnings.append(message)

    @property
    def ok(self) -> bool:
        return self.errors_total == 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ImportReport":
        known = {name: value for name, value in (data or {}).items() if name in cls.__dataclass_fields__}
        return cls(**known)

    def lines(self) -> list[str]:
        """The report as text, the same in the CLI and on the admin page."""
        out = [
            f"Import into {self.table} ({self.mode}){' - dry run' if self.dry_run else ''}: {self.state}",
            f"Source: {self.source}",
            f"Rows read {self.rows_read}, valid {self.rows_valid}, rejected {self.rows_rejected}",
        ]
        if self.effective_from:
            out.append(f"Rows without a date start at {self.effective_from}")
        if self.errors_total:
            out.append(f"Errors ({self.errors_total}):")
            out += [f"  {error['message']}" for error in self.errors]
            if self.errors_total > len(self.errors):
                out.append(f"  ... and {self.errors_total - len(self.errors)} more")
        out += [f"Warning: {warning}" for warning in self.warnings]
        counts = self.diff.get("counts") or {}
        if counts:
            kinds = [kind for kind in CHANGE_KINDS if kind in counts]
            out.append("Changes: " + ", ".join(f"{kind} {counts[kind]}" for kind in kinds))
            samples_of = self.diff.get("samples") or {}
            for name in kinds:
                for sample in samples_of.get(name, []):
                    out.append(f"  {name}: {_sample(sample)}")
        if self.notice.get("count"):
            out.append(
                f"Notice: {self.notice['count']} increases or closed codes take effect sooner than "
                f"the {self.notice['days']} days' notice"
            )
            out += [f"  {_sample(sample)}" for sample in self.notice.get("samples", [])]
        if self.margin.get("count"):
            out.append(f"Margin: {self.margin['count']} sell prices would sit below the new buy price")
            out += [f"  {_sample(sample)}" for sample in self.margin.get("samples", [])]
        if self.version is not None:
            out.append(f"Live version: {self.version}")
        if self.timings:
            out.append(
                "Timings: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())
            )
        return out


def _sample(sample: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in sample.items() if value not in (None, ""))
