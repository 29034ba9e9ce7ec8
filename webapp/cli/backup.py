"""`otweb backup DEST`, `otweb restore SRC` and `otweb db compact`: the record copied online, put
back into an empty workspace, compacted at once."""
from __future__ import annotations

import time
from pathlib import Path

import click

from webapp.store import backup as backups

workspace_option = click.option("--workspace", type=click.Path(path_type=Path), default=None,
                                help="The workspace (env OTWEB_WORKSPACE).")


def _workspace(workspace) -> Path:
    from webapp.settings import Settings
    return Settings.from_env(workspace=workspace).workspace


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@workspace_option
def backup(dest, workspace):
    """Copy the record (database, run folders' files) into DEST, a new or empty folder, while
    runs train; DEST/manifest.json lists every file with its size and sha256."""
    try:
        manifest = backups.backup(_workspace(workspace), dest)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    total = manifest["database"]["size"] + sum(f["size"] for f in manifest["files"])
    click.echo(f"backed up the record and {len(manifest['files'])} files ({total / 2**20:.1f} MB) "
               f"in {manifest['took_s']:.1f} s to {dest}")


@click.command("restore")
@click.argument("src", type=click.Path(path_type=Path, exists=True, file_okay=False))
@workspace_option
def restore(src, workspace):
    """Put the backup in SRC into the workspace, which must be new or empty; every file's sha256
    is checked against SRC/manifest.json."""
    target = _workspace(workspace)
    try:
        manifest = backups.restore(src, target)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    made = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(manifest["made_at"]))
    click.echo(f"restored the record of {made} and {len(manifest['files'])} files into {target}")


@click.group("db")
def db():
    """The record's upkeep."""


@db.command("compact")
@workspace_option
def compact(workspace):
    """Compact every ended run now and give free pages back; on a workspace from before, switch
    auto_vacuum on first (a VACUUM: stop the web meanwhile on a large record)."""
    from webapp import store
    conn = store.connect(_workspace(workspace) / backups.DATABASE)
    try:
        if store.compaction.auto_vacuum(conn) != "incremental":
            click.echo(f"auto_vacuum switched on in {store.compaction.switch_auto_vacuum(conn):.1f} s")
        store.init_schema(conn)
        runs = store.compaction.compact_all(conn)
    finally:
        conn.close()
    click.echo(f"compacted {runs} ended runs")
