"""Runs the quality suites with Great Expectations and turns failing rows into quarantine reasons.

One :class:`Gate` per stage holds an ephemeral GE 1.x context (nothing is written to a ``gx/`` project
folder: the suites are defined in code, :mod:`crab.quality.suites`) with a file-system data docs site.
Each dataset or task is one pandas batch validated by one checkpoint with ``result_format`` COMPLETE, so
every failed expectation reports the index labels of its unexpected rows; each row's reasons are the
failed checks' reason templates formatted with that row's fields (``"unknown category 'Dog'"``).
Checks of severity ``"warning"`` are reported but quarantine nothing.

The data docs are built into a hidden sibling folder and swapped in only when the whole stage got that
far, so a crashed run never leaves half a site. great_expectations is imported here, inside functions
and only by the stage modules, because it costs about 5 s (the CLI must start fast).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crab.errors import CrabError
from crab.quality.quarantine import ExpectationOutcome, ValidationResult
from crab.quality.suites import Check

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Gate", "SuiteRun", "enforce_max_failure_rate", "log_summary", "open_gate"]

log = logging.getLogger(__name__)

_SITE = "crab_docs"


@dataclass(frozen=True)
class SuiteRun:
    """The verdict of one suite over one batch.

    Attributes:
        reasons: row index label -> reasons from critical checks it failed (rows that passed are absent).
        outcomes: one outcome per check, in suite order.
    """

    reasons: dict[Any, list[str]]
    outcomes: list[ExpectationOutcome]


class Gate:
    """A Great Expectations context for one stage, writing data docs into ``docs_tmp``.

    Use :func:`open_gate` rather than constructing it directly.
    """

    def __init__(self, stage: str, docs_tmp: Path) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline always (DESIGN.md section 8)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.stage = stage
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._drop_default_sites()
        self.ctx.add_data_docs_site(
            site_name=_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_tmp.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self._source = self.ctx.data_sources.add_pandas(stage)

    def _drop_default_sites(self) -> None:
        """Remove the ephemeral context's own docs site (an empty folder it made under the system temp dir)."""
        for name, config in dict(self.ctx.config.data_docs_sites or {}).items():
            self.ctx.delete_data_docs_site(name)
            folder = Path(config.get("store_backend", {}).get("base_directory", ""))
            if folder.is_absolute() and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def validate(self, group: str, frame: pd.DataFrame, checks: Sequence[Check]) -> SuiteRun:
        """Validate one batch (a dataset or task) against its checks and update the data docs.

        Args:
            group: dataset or task name (names the GE asset, suite and checkpoint).
            frame: one row per item; must hold every column the checks name.
            checks: the suite.

        Returns:
            the failing rows' reasons and one outcome per check.

        Raises:
            RuntimeError: an expectation could not be evaluated (a bug in the frame or suite, not in the data).
        """
        import great_expectations.expectations as gxe

        gx = self._gx
        missing = sorted({c for check in checks for c in check.columns} - set(frame.columns))
        if missing:
            raise RuntimeError(f"{self.stage}/{group}: frame lacks columns {missing} needed by the suite")
        batch_def = self._source.add_dataframe_asset(group).add_batch_definition_whole_dataframe("all_rows")
        suite = gx.ExpectationSuite(name=f"{self.stage}.{group}")
        for i, check in enumerate(checks):
            expectation_cls = getattr(gxe, check.expectation)
            suite.add_expectation(
                expectation_cls(
                    **check.kwargs,
                    severity=check.severity,
                    notes=check.reason,
                    meta={"check_index": i, "check": check.name},
                )
            )
        suite = self.ctx.suites.add(suite)
        definition = self.ctx.validation_definitions.add(
            gx.ValidationDefinition(name=f"{self.stage}.{group}", data=batch_def, suite=suite)
        )
        checkpoint = self.ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"{self.stage}.{group}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[_SITE])],
                result_format={"result_format": "COMPLETE"},
            )
        )
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": frame})
        (validation,) = checkpoint_result.run_results.values()

        reasons: dict[Any, list[str]] = {}
        outcomes: list[ExpectationOutcome | None] = [None] * len(checks)
        for res in validation.results:
            config = res.expectation_config
            check = checks[config.meta["check_index"]]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"{self.stage}/{group}: expectation {check.name} ({config.type}) raised "
                    f"{res.exception_info.get('exception_message')}"
                )
            unexpected = list(res.result.get("unexpected_index_list") or [])
            if int(res.result.get("unexpected_count") or 0) != len(unexpected):  # never quarantine a partial list
                raise RuntimeError(f"{self.stage}/{group}: {check.name} returned a truncated list of unexpected rows")
            outcomes[config.meta["check_index"]] = ExpectationOutcome(
                expectation=config.type,
                column=check.column_label,
                success=bool(res.success),
                unexpected_count=len(unexpected),
                severity=check.severity,
                reason=check.reason,
            )
            if not unexpected:
                continue
            if check.severity == "warning":
                log.warning("%s/%s: %d item(s) fail %s (warning only)", self.stage, group, len(unexpected), check.name)
                continue
            for label in unexpected:
                reasons.setdefault(label, []).append(check.describe(frame.loc[label].to_dict()))
        if any(o is None for o in outcomes):
            raise RuntimeError(f"{self.stage}/{group}: Great Expectations returned fewer results than checks")
        return SuiteRun(reasons=reasons, outcomes=[o for o in outcomes if o is not None])


@contextmanager
def open_gate(stage: str, docs_dir: Path) -> Iterator[Gate]:
    """A :class:`Gate` whose data docs replace ``docs_dir`` when the block completes without error.

    Args:
        stage: the stage name (prefix of GE object names).
        docs_dir: final folder of the data docs site (``index.html`` inside).
    """
    docs_tmp = docs_dir.with_name(f".{docs_dir.name}.tmp")
    shutil.rmtree(docs_tmp, ignore_errors=True)
    docs_tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        gate = Gate(stage, docs_tmp)
        yield gate
        gate.ctx.build_data_docs(site_names=[_SITE])
        _swap_in(docs_tmp, docs_dir)
    finally:
        shutil.rmtree(docs_tmp, ignore_errors=True)


def _swap_in(new: Path, final: Path) -> None:
    """Replace folder ``final`` by ``new`` with renames (the old copy is removed afterwards)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def log_summary(result: ValidationResult) -> None:
    """Log one line per dataset / task, and one per failed expectation."""
    for name, group in sorted(result.groups.items()):
        if not group.present:
            log.info("%s: %s: absent (%s), not validated", result.stage, name, group.root)
            continue
        log.info(
            "%s: %s: %d of %d items passed, %d quarantined (%.1f%%)",
            result.stage,
            name,
            group.num_passed,
            group.num_items,
            group.num_quarantined,
            100 * group.failure_rate,
        )
        for outcome in group.expectations:
            if not outcome.success:
                log.info(
                    "%s: %s:   %s on %s: %d unexpected (%s)",
                    result.stage,
                    name,
                    outcome.expectation,
                    outcome.column,
                    outcome.unexpected_count,
                    outcome.severity,
                )


def enforce_max_failure_rate(result: ValidationResult) -> None:
    """Fail the stage if any dataset / task quarantines more than ``max_failure_rate`` of its items.

    Raises:
        CrabError: one line naming each offending dataset / task, its rate and the report.
    """
    failed = result.failed_groups
    if not failed:
        return
    parts = [
        f"{g.name} quarantined {g.num_quarantined} of {g.num_items} items ({100 * g.failure_rate:.1f}%)" for g in failed
    ]
    raise CrabError(
        f"{result.stage}: {'; '.join(parts)}, above validation.max_failure_rate "
        f"{100 * result.max_failure_rate:.1f}% (reasons in {result.report_path})"
    )
