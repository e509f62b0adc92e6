"""Man pages for the package: cronsup(8) from the CLI's --help texts, cronsup-jobs(5) from the
README's "The jobs file" section; run by `make deb` (packaging/deb/build.py).

    python packaging/deb/manpages.py OUTDIR    # writes OUTDIR/cronsup.8 and OUTDIR/cronsup-jobs.5
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WIDTH = 78


def _escape(text: str) -> str:
    """Text safe in roff: backslashes doubled, no line starting with a control character."""
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln for ln in text.split("\n"))


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** as roff fonts, the rest escaped."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`|\*\*[^*]+\*\*)", text)):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append("\\fB" + _escape(part[1:-1]).replace("-", "\\-") + "\\fR")
        elif part.startswith("**") and part.endswith("**"):
            out.append("\\fB" + _escape(part[2:-2]) + "\\fR")
        else:
            out.append(_escape(part))
    text = "".join(out)
    return ("\\&" + text) if text.startswith((".", "'")) else text


def _header(name: str, section: int, version: str, title: str) -> list[str]:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    day = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).date() if epoch else dt.date(2026, 1, 1)
    return [f'.TH {name.upper()} {section} "{day.isoformat()}" "cronsup {version}" "{title}"']


def cronsup_8(version: str) -> str:
    """Every command's --help, as `cronsup COMMAND --help` prints it."""
    import click

    sys.path.insert(0, str(REPO))
    from cronsup.cli import main

    def help_of(command: click.Command, name: str, parent: click.Context | None) -> str:
        ctx = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                            max_content_width=WIDTH)
        return command.get_help(ctx)

    root = click.Context(main, info_name="cronsup", terminal_width=WIDTH, max_content_width=WIDTH)
    lines = _header("cronsup", 8, version, "System Administration")
    lines += [".SH NAME", "cronsup \\- a crontab\\-compatible supervisor daemon",
              ".SH SYNOPSIS", "\\fBcronsup\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
              ".SH DESCRIPTION", ".nf", _escape(help_of(main, "cronsup", None)), ".fi",
              ".SH COMMANDS"]
    for name in main.list_commands(root):
        command = main.get_command(root, name)
        if command.hidden:
            continue
        lines += [f".SS cronsup {name}", ".nf", _escape(help_of(command, name, root)), ".fi"]
    lines += [
        ".SH FILES",
        ".TP", "\\fI/etc/cronsup/jobs\\fR", "The jobs file (see \\fBcronsup\\-jobs\\fR(5)).",
        ".TP", "\\fI/var/lib/cronsup/runs.db\\fR", "The run log, with the control socket beside it.",
        ".TP", "\\fI/var/lib/cronsup/takeover.json\\fR",
        "How cron was before \\fBcronsup takeover\\fR; \\fBcronsup release\\fR reads it.",
        ".TP", "\\fI/lib/systemd/system/cronsup.service\\fR", "The system unit.",
        ".SH EXIT STATUS",
        "0 on success, 1 for invalid input or a failed command, 2 for a usage error, 3 when a "
        "command needs the daemon and none runs, 4 when the daemon does not answer.",
        ".SH SEE ALSO", "\\fBcronsup\\-jobs\\fR(5), \\fBcrontab\\fR(5), \\fBcron\\fR(8)",
    ]
    return "\n".join(lines) + "\n"


def jobs_section(readme: str) -> str:
    """The README's "## The jobs file" section, up to the next second-level heading."""
    match = re.search(r"^## The jobs file\n(.*?)(?=^## )", readme, re.S | re.M)
    if match is None:
        raise SystemExit("README.md has no '## The jobs file' section for cronsup-jobs(5)")
    return match.group(1)


def markdown_to_roff(text: str) -> list[str]:
    """The Markdown the README uses (paragraphs, ``` blocks, - lists, | tables, ### headings)."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out += [".PP", ".RS 4", ".nf", _escape("\n".join(block)), ".fi", ".RE"]
        elif line.startswith("### "):
            out += [".SS " + _inline(line[4:].strip())]
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            i -= 1
            for cells in rows[1:]:  # the first row holds the column names
                rest = [c for c in cells[1:] if c]
                out += [".TP", _inline(cells[0]), " \\(em ".join(map(_inline, rest)) if rest else "\\&"]
        elif line.startswith("- "):
            item = [line[2:].strip()]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") and lines[i + 1].strip():
                i += 1
                item.append(lines[i].strip())
            out += [".IP \\(bu 2", _inline(" ".join(item))]
        elif line.strip():
            para = [line.strip()]
            while i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].startswith(
                    ("```", "- ", "|", "### ")):
                i += 1
                para.append(lines[i].strip())
            out += [".PP", _inline(" ".join(para))]
        i += 1
    return out


def cronsup_jobs_5(readme: str, version: str) -> str:
    lines = _header("cronsup-jobs", 5, version, "File Formats")
    lines += [".SH NAME", "cronsup\\-jobs \\- the jobs file of cronsup", ".SH DESCRIPTION"]
    lines += markdown_to_roff(jobs_section(readme))
    lines += [".SH FILES", "\\fI/etc/cronsup/jobs\\fR (root), \\fI~/.config/cronsup/jobs\\fR (others)",
              ".SH SEE ALSO", "\\fBcronsup\\fR(8), \\fBcrontab\\fR(5)"]
    return "\n".join(lines) + "\n"


def write(outdir: Path, version: str) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    readme = (REPO / "README.md").read_text()
    pages = {"cronsup.8": cronsup_8(version), "cronsup-jobs.5": cronsup_jobs_5(readme, version)}
    written = []
    for name, text in pages.items():
        (outdir / name).write_text(text)
        written.append(outdir / name)
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from cronsup import __version__

    for page in write(Path(sys.argv[1] if len(sys.argv) > 1 else "."), __version__):
        print(page)
