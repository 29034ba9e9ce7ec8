"""`otweb user add|remove|list|passwd|role` and `otweb token create|list|revoke`."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import click

from webapp.store import accounts
from webapp.settings import worker_user
from webapp.store.accounts import ROLES, AuthError

workspace_option = click.option("--workspace", type=click.Path(path_type=Path), default=None,
                                help="The workspace whose accounts to change (env OTWEB_WORKSPACE).")
RESTART_HINT = "(a running server switches accounts on at its next start)"
WORKER_HINT = """give the worker {name} the Redis address without credentials, its name and this token:
  otweb worker --redis-url redis://WEB-HOST:6379/0 --name {name} --token TOKEN
(or REDIS_URL, OTWEB_WORKER_NAME, OTWEB_WORKER_TOKEN). It logs in to Redis as the user {user}, which
the web makes within 5 s (it stores only the token's sha256) and which reaches only {name}'s own keys."""


@contextmanager
def _db(workspace):
    from webapp.settings import Settings
    settings = Settings.from_env(workspace=workspace)
    settings.workspace.mkdir(parents=True, exist_ok=True)
    conn = accounts.connect(settings.database)
    try:
        yield conn
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()


def _when(stamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


@click.group()
def user():
    """Accounts: viewer (sees), operator (trains, edits configs), admin (users, deletes runs)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.password_option(help="Prompted for when not given (at least 8 characters).")
@workspace_option
def user_add(name, role, password, workspace):
    with _db(workspace) as conn:
        first = not accounts.has_principals(conn)
        accounts.add_user(conn, name, password, role)
    click.echo(f"user {name} added ({role})" + (f" {RESTART_HINT}" if first else ""))


@user.command("remove")
@click.argument("name")
@workspace_option
def user_remove(name, workspace):
    with _db(workspace) as conn:
        accounts.remove_user(conn, name)
    click.echo(f"user {name} removed, with their tokens")


@user.command("list")
@workspace_option
def user_list(workspace):
    with _db(workspace) as conn:
        for row in accounts.list_users(conn):
            click.echo(f"{row['name']}\t{row['role']}\tsince {_when(row['created_at'])}")


@user.command("passwd")
@click.argument("name")
@click.password_option(help="Prompted for when not given.")
@workspace_option
def user_passwd(name, password, workspace):
    with _db(workspace) as conn:
        accounts.set_password(conn, name, password)
    click.echo(f"password of {name} changed; their sessions and the tokens traded for their password end "
               "(tokens made by `otweb token create` stay)")


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@workspace_option
def user_role(name, role, workspace):
    with _db(workspace) as conn:
        accounts.set_role(conn, name, role)
    click.echo(f"{name} is now {role}")


@click.group()
def token():
    """API tokens for scripts: send them as `Authorization: Bearer <token>`."""


@token.command("create")
@click.argument("name", required=False)
@click.option("--user", "user_name", default=None, help="Act as this user (the token never outranks them).")
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="Default: the user's role, or operator for a token without a user.")
@click.option("--worker", "worker_name", default=None,
              help="A worker's token (for `otweb worker --token`): the password of the worker NAME's own Redis "
                   "user, which reaches only that worker's keys.")
@workspace_option
def token_create(name, user_name, role, worker_name, workspace):
    if bool(name) == bool(worker_name):
        raise click.UsageError("give a token NAME, or --worker NAME for a worker's token")
    with _db(workspace) as conn:
        first = not accounts.has_principals(conn)
        if worker_name:
            if user_name or role:
                raise click.UsageError("a worker's token has no user and no role")
            token_id, secret = accounts.create_worker_token(conn, worker_name)
            first, name = False, f"worker {worker_name}"
        else:
            token_id, secret = accounts.create_token(conn, name, role=role, user=user_name)
    click.echo(f"token {token_id} ({name}) created; it is shown only now:", err=True)
    click.echo(secret)
    if worker_name:
        click.echo(WORKER_HINT.format(name=worker_name, user=worker_user(worker_name)), err=True)
    if first:
        click.echo(RESTART_HINT, err=True)


@token.command("list")
@workspace_option
def token_list(workspace):
    with _db(workspace) as conn:
        for row in accounts.list_tokens(conn):
            state = f"revoked {_when(row['revoked_at'])}" if row["revoked_at"] else "live"
            click.echo(f"{row['id']}\t{row['name']}\t{row['role']}\t{row['user_name'] or '-'}\t{state}\t"
                       f"last used {_when(row['last_used_at'])}")


@token.command("revoke")
@click.argument("token_id", type=int)
@workspace_option
def token_revoke(token_id, workspace):
    with _db(workspace) as conn:
        accounts.revoke_token(conn, token_id)
    click.echo(f"token {token_id} revoked (a worker's Redis user, and its connections, end with its last "
               "token within 5 s while the web runs)")
