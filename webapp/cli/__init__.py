"""The `otweb` command: serve (everything), web, worker, demo, train, backup, restore, db, dataset push."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from webapp.settings import Settings

workspace_option = click.option("--workspace", type=click.Path(path_type=Path), default=None,
                                help="Where runs, the database and the demo live (env OTWEB_WORKSPACE).")
config_dir_option = click.option("--config-dir", type=click.Path(path_type=Path), default=None,
                                 help="The configs folder (env OTWEB_CONFIG_DIR).")


def _settings(workspace=None, config_dir=None) -> Settings:
    return Settings.from_env(workspace=workspace, config_dir=config_dir)


@click.group()
def main():
    """OneTrainer Web: train diffusion models from the browser."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-demo", is_flag=True, help="Do not build the demo model on first start.")
@click.option("--access-log", is_flag=True,
              help="Print a line per HTTP request (off: the terminal keeps to what matters).")
@workspace_option
@config_dir_option
def serve(host, port, no_demo, access_log, workspace, config_dir):
    """Everything on this machine: Redis (embedded unless REDIS_URL), a worker and the web app."""
    from webapp.cli.serve import Standalone
    settings = _settings(workspace, config_dir)
    _refuse_open_bind(host, settings)
    sys.exit(Standalone(settings, host, port, access_log).run(with_demo=not no_demo))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes.")
@workspace_option
@config_dir_option
def web(host, port, workers, workspace, config_dir):
    """Only the web app (gunicorn + gevent), against REDIS_URL."""
    from webapp.cli.serve import gunicorn_command
    settings = _settings(workspace, config_dir)
    if not settings.redis_url:
        raise click.UsageError("set REDIS_URL (or use `otweb serve`, which embeds Redis)")
    _refuse_open_bind(host, settings)
    command = gunicorn_command(host, port, workers)
    os.execve(command[0], command, settings.export_env())


@main.command()
@click.option("--workspace", type=click.Path(path_type=Path), default=None,
              help="This worker's own folder: its run folders (worker/runs/), its spool, and where a config's "
                   "relative paths (models, datasets, caches) resolve (env OTWEB_WORKSPACE).")
@click.option("--redis-url", default=None,
              help="The fleet's Redis, e.g. rediss://web-host:6380/0 (env REDIS_URL); with --token, no credentials.")
@click.option("--token", default=None, help="This worker's token: otweb token create --worker NAME (env "
              "OTWEB_WORKER_TOKEN); with it the worker logs in to Redis as its own user, whatever the URL says.")
@click.option("--name", default=None, help="The worker's name in the fleet (env OTWEB_WORKER_NAME; default HOST-gpu0).")
@click.option("--labels", default=None, help="What runs may ask for, e.g. 24gb,sdxl (env OTWEB_WORKER_LABELS).")
@click.option("--check", is_flag=True,
              help="Report whether OneTrainer (ONETRAINER_DIR) imports here, and its commit; then exit.")
@click.option("--gpus", default=None, metavar="0,1,...",
              help="The GPUs this worker owns (default: OTWEB_WORKER_GPUS, else 0); a run that "
                   "asks for more (multi_gpu, device_indexes) waits for a bigger worker.")
def worker(workspace, redis_url, token, name, labels, check, gpus):
    """Only a worker (one per GPU host): needs only Redis, its token and its own folder."""
    if check:
        sys.exit(_check_worker_host())
    _check_trainer_threads()
    from webapp.settings import check_worker_name, parse_gpus, parse_labels
    from webapp.worker.loop import Worker
    settings = Settings.from_env(workspace=workspace, redis_url=redis_url, worker_token=token, worker_name=name,
                                 worker_labels=parse_labels(labels) if labels is not None else None)
    if gpus is not None:
        try:
            settings.worker_gpus = parse_gpus(gpus)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--gpus") from None
    if not settings.redis_url:
        raise click.UsageError("set REDIS_URL or --redis-url (or use `otweb serve`, which embeds Redis)")
    try:
        check_worker_name(settings.worker_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    Worker(settings).serve_forever()


def _check_trainer_threads() -> None:
    """A bad OTWEB_TRAINER_THREADS is refused at the start, not by every run's trainer."""
    from webapp.settings import trainer_threads
    try:
        trainer_threads()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _check_worker_host() -> int:
    from webapp.config.builtin.backend_choice import ENV_VAR, INSTALL_HINT, onetrainer_dir
    from webapp.trainer.onetrainer import check_installation
    directory = onetrainer_dir()
    if directory is None:
        click.echo(f"OneTrainer: not set up ({ENV_VAR} is not set); the built-in trainer only. "
                   f"To use it: {INSTALL_HINT}")
        return 0
    info = check_installation(Path(directory))
    click.echo(f"OneTrainer: {ENV_VAR}={info['dir']}")
    click.echo(f"OneTrainer: {info['version']}")
    if info["ok"]:
        click.echo("OneTrainer: imports OK")
        return 0
    click.echo(f"OneTrainer: does not import: {info['error']}")
    return 1


@main.command()
@click.option("--force", is_flag=True, help="Build again even if it exists.")
@click.option("--model", "family", type=click.Choice(["sd15", "sd2", "sdxl"]), default="sd15",
              show_default=True, help="The family of the tiny model: SD 1.5, SD 2.1 (v-prediction) or SDXL.")
@workspace_option
@config_dir_option
def demo(force, family, workspace, config_dir):
    """Build a tiny demo model, the shapes dataset and its config (configs/demo.json, demo-sd2.json
    or demo-sdxl.json; offline, < 1 minute)."""
    from webapp.trainer.demo import build_demo
    settings = _settings(workspace, config_dir)
    path = build_demo(settings.workspace, settings.config_dir, force=force, family=family)
    click.echo(f"demo config: {path}")


@main.command()
@click.argument("config")
@click.option("--quiet", is_flag=True, help="No progress bar and no callbacks (a baseline for benchmarks).")
@workspace_option
@config_dir_option
def train(config, quiet, workspace, config_dir):
    """Train one CONFIG (a path or a name in the configs folder) in this terminal."""
    from webapp.config.library import config_path
    from webapp.cli.train import train_in_terminal
    settings = _settings(workspace, config_dir)
    path = Path(config)
    if not path.exists():
        path = config_path(settings.config_dir, config)
    if not path.exists():
        raise click.BadParameter(f"no config file {config} (nor {path})", param_hint="CONFIG")
    _check_trainer_threads()
    run_dir = train_in_terminal(path, settings.workspace, quiet=quiet)
    click.echo(f"run folder: {run_dir}")


def _refuse_open_bind(host: str, settings: Settings) -> None:
    from webapp.store.accounts import refuse_open_bind
    settings.workspace.mkdir(parents=True, exist_ok=True)
    message = refuse_open_bind(host, settings.database)
    if message:
        raise click.ClickException(message)


from webapp.cli.accounts import token, user  # noqa: E402  (the account commands)
from webapp.cli.dataset import dataset_commands  # noqa: E402  (otweb dataset push)
main.add_command(user)
main.add_command(token)
from webapp.cli.backup import backup, db, restore  # noqa: E402  (the record's backup and upkeep)
for _command in (backup, restore, db):
    main.add_command(_command)
main.add_command(dataset_commands)
