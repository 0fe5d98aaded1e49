"""Statistics and the printed tables."""

from __future__ import annotations

import math
import statistics
import typing

import bench_cases as bc

RAW = "raw"
THIS = "databases"

# What the package aims for (issue 5): geometric mean of the ratios to the raw driver,
# execute_many against the driver's executemany, and faster than every other contender
# (SQLAlchemy, databases 0.9.0, databasez) in every case.
GEOMEAN_TARGETS = {"postgresql": 1.3, "mysql": 1.3, "sqlite": 1.6}
EXECUTE_MANY_TARGET = 1.5

BACKEND_TITLES = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}


def _geomean(ratios: list[float]) -> float | None:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None


def summarise(
    samples: dict[str, dict[str, list[float]]],
    cpu_samples: dict[str, dict[str, list[float]]],
    errors: dict[str, dict[str, str]],
    counts: dict[str, dict[str, int]],
    contenders: list[str],
) -> dict[str, typing.Any]:
    """Per case and contender: median, min, max and samples (seconds per operation), the
    ratio to the raw driver, and the same median and ratio of CPU time; per contender:
    the geometric mean of its ratios (wall and CPU)."""
    cases: dict[str, dict[str, typing.Any]] = {}
    for case in bc.CASES:
        if case not in samples:
            continue
        row: dict[str, typing.Any] = {}
        raw_times = samples[case].get(RAW) or []
        raw_median = statistics.median(raw_times) if raw_times else None
        raw_cpu = cpu_samples.get(case, {}).get(RAW) or []
        raw_cpu_median = statistics.median(raw_cpu) if raw_cpu else None
        for name in contenders:
            times = samples[case].get(name) or []
            entry: dict[str, typing.Any] = {
                "batch": counts.get(case, {}).get(name),
                "samples": times,
                "error": errors.get(case, {}).get(name),
            }
            if times:
                median = statistics.median(times)
                entry.update(median=median, min=min(times), max=max(times))
                if raw_median:
                    entry["ratio"] = median / raw_median
            cpu_times = cpu_samples.get(case, {}).get(name) or []
            if cpu_times:
                entry["cpu_samples"] = cpu_times
                entry["cpu_median"] = statistics.median(cpu_times)
                if raw_cpu_median:
                    entry["cpu_ratio"] = entry["cpu_median"] / raw_cpu_median
            row[name] = entry
        cases[case] = row
    geomeans: dict[str, dict[str, typing.Any]] = {}
    for name in contenders:
        if name == RAW:
            continue
        entries = [row.get(name, {}) for row in cases.values()]
        ratios = [entry["ratio"] for entry in entries if "ratio" in entry]
        cpu_ratios = [entry["cpu_ratio"] for entry in entries if "cpu_ratio" in entry]
        geomeans[name] = {
            "geomean": _geomean(ratios),
            "cases": len(ratios),
            "cpu_geomean": _geomean(cpu_ratios),
            "cpu_cases": len(cpu_ratios),
        }
    return {"cases": cases, "geomean": geomeans}


def check_targets(backend: str, summary: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """How this repository's package stands against the targets."""
    cases = summary["cases"]
    geomean = summary["geomean"].get(THIS, {})
    result: dict[str, typing.Any] = {
        "geomean": geomean.get("geomean"),
        "geomean_target": GEOMEAN_TARGETS.get(backend),
        "execute_many_ratio": cases.get("execute_many_1000", {}).get(THIS, {}).get("ratio"),
        "execute_many_target": EXECUTE_MANY_TARGET,
        "slower_than": {},
    }
    others = {name for row in cases.values() for name in row} - {RAW, THIS}
    for other in sorted(others):
        slower = []
        for case, row in cases.items():
            mine, theirs = row.get(THIS, {}).get("median"), row.get(other, {}).get("median")
            if mine is not None and theirs is not None and mine >= theirs:
                slower.append(case)
        result["slower_than"][other] = slower
    return result


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _cell(entry: dict[str, typing.Any] | None, with_ratio: bool, metric: str) -> str:
    """`metric` is "" for wall time, "cpu_" for CPU time."""
    if not entry:
        return "-"
    if entry.get(f"{metric}median") is None:
        return "error" if entry.get("error") else "-"
    text = format_time(entry[f"{metric}median"])
    if with_ratio and entry.get(f"{metric}ratio") is not None:
        text += f" {entry[f'{metric}ratio']:5.2f}x"
    return text


def _table(
    title: str,
    headers: list[str],
    summary: dict[str, typing.Any],
    contenders: list[str],
    metric: str,
) -> list[str]:
    """Lines of one table: a row per case, then the geometric means."""
    rows: list[list[str]] = []
    for case, row in summary["cases"].items():
        rows.append([case] + [_cell(row.get(name), name != RAW, metric) for name in contenders])
    geo = ["geometric mean (ratio)"]
    for name in contenders:
        if name == RAW:
            geo.append("1.00x")
            continue
        entry = summary["geomean"].get(name, {})
        value = entry.get(f"{metric}geomean")
        total = len(summary["cases"])
        if value is None:
            geo.append("-")
        else:
            counted = entry[f"{metric}cases"]
            note = "" if counted == total else f" ({counted}/{total} cases)"
            geo.append(f"{value:.2f}x{note}")
    rows.append(geo)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        title,
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))
        ),
    ]
    for index, row_cells in enumerate(rows):
        if index == len(rows) - 1:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row_cells, widths))
            )
        )
    return lines


def format_table(backend: str, result: dict[str, typing.Any]) -> str:
    """The tables of one backend: median time per operation and ratio to the raw driver,
    then the same for the CPU time of the contender's process."""
    summary = result["summary"]
    contenders: list[str] = result["contender_order"]
    info = result["contenders"]
    headers = ["case"]
    for name in contenders:
        details = info.get(name, {})
        version = details.get("version")
        library = "this repo" if name == THIS else details.get("library")
        label = f"{name} ({library} {version})" if version else name
        headers.append(label)
    title = (
        f"== {BACKEND_TITLES.get(backend, backend)} {result.get('server_version', '')}: "
        f"{result['url']}, {result['rounds']} rounds"
    )
    if result.get("cpu") is not None:
        title += f", client on CPU {result['cpu']}"
    lines = _table(
        f"{title}, median time per operation (ratio to raw) ==", headers, summary, contenders, ""
    )
    lines.append("")
    lines += _table(
        f"{title}, median CPU time of the client process per operation (ratio to raw) ==",
        headers,
        summary,
        contenders,
        "cpu_",
    )
    errors = [
        f"  {case} / {name}: {entry['error']}"
        for case, row in summary["cases"].items()
        for name, entry in row.items()
        if entry.get("error")
    ]
    errors += [f"  setup / {name}: {error}" for name, error in result["setup_errors"].items()]
    if errors:
        lines.append("errors:")
        lines.extend(errors)
    targets = result.get("targets")
    if targets and targets.get("geomean") is not None:
        parts = [
            f"geomean {targets['geomean']:.2f}x (target <= {targets['geomean_target']})",
        ]
        if targets.get("execute_many_ratio") is not None:
            parts.append(
                f"execute_many {targets['execute_many_ratio']:.2f}x "
                f"(target <= {targets['execute_many_target']})"
            )
        for other, slower in targets["slower_than"].items():
            parts.append(f"not faster than {other} in: {', '.join(slower) or 'none'}")
        lines.append(f"targets for {THIS}: " + "; ".join(parts))
    return "\n".join(lines)
