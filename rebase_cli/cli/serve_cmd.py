"""`rebase serve policy|reward|status|stop|logs`: launch and manage model servers."""

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rebase_cli.cli.common import (
    console,
    db_path,
    err_console,
    open_db,
    print_json,
    with_db,
)
from rebase_cli.errors import NotFoundError, ServeError, UsageError
from rebase_cli.params import RewardProtocol
from rebase_cli.serving import router
from rebase_cli.serving.launchers import (
    PRIORITY_SCHEDULING_FLAGS,
    EngineName,
    Launcher,
    Role,
    ServeSpec,
    get_launcher,
)
from rebase_cli.serving.logs import LogFollower, follow, tail_lines
from rebase_cli.serving.process import DEFAULT_GRACE_S
from rebase_cli.url_lists import split_urls

# The registry and the service pull in the store (sqlalchemy) and httpx: imported by the commands
# that use them, so that `--help` does not pay for them. (No `from __future__ import annotations`
# here: the role commands' annotations read the closure's `role`.)
if TYPE_CHECKING:
    from rebase_cli.serving.service import StartedServer

app = typer.Typer(help="Launch and manage policy and reward servers.", no_args_is_help=True)


class RoleName(str, Enum):
    policy = "policy"
    reward = "reward"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _role_command(role: Role):
    def command(
        extra: Annotated[
            list[str] | None,
            typer.Argument(
                help="Extra arguments passed to the engine as they are; put them after `--`.",
                show_default=False,
            ),
        ] = None,
        engine: Annotated[
            EngineName,
            typer.Option(
                help="sglang (GPU), sim (CPU simulator) or transformers (policy: `transformers "
                "serve`; reward: /v1/score and /classify computed with transformers)."
            ),
        ] = EngineName.sglang,
        model: Annotated[
            str | None, typer.Option(help="Hugging Face id or local folder.", show_default=False)
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(
                help="Port (default: 30000 policy / 30001 reward, or any free port if taken; "
                "0 = any free port).",
                show_default=False,
            ),
        ] = None,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        tp: Annotated[
            int | None, typer.Option(help="Tensor parallel size (SGLang --tp-size).")
        ] = None,
        dp: Annotated[
            int | None, typer.Option(help="Data parallel replicas (SGLang --dp-size).")
        ] = None,
        mem_fraction: Annotated[
            float | None,
            typer.Option(help="GPU memory share for weights and KV cache (--mem-fraction-static)."),
        ] = None,
        api_key: Annotated[
            str | None,
            typer.Option(
                help="Key clients must send. Never stored: clients read it from $REBASE_API_KEY.",
                show_default=False,
            ),
        ] = None,
        served_model_name: Annotated[
            str | None, typer.Option(help="Model id clients use (default: --model).")
        ] = None,
        reward_protocol: Annotated[
            RewardProtocol | None,
            typer.Option(
                help="score (LM-head PRM, default) or classify (reward head; sglang: "
                "--is-embedding).",
                hidden=role == "policy",
                show_default=False,
            ),
        ] = None,
        device: Annotated[
            str | None,
            typer.Option(help="transformers engine: cpu, cuda or auto.", show_default=False),
        ] = None,
        deterministic: Annotated[
            bool,
            typer.Option(
                "--deterministic",
                help="Seeded, reproducible sampling (SGLang --enable-deterministic-inference; "
                "sim: the sglang-deterministic flavour).",
                hidden=role != "policy",
            ),
        ] = False,
        detach: Annotated[
            bool, typer.Option("--detach", "-d", help="Leave it running in the background.")
        ] = False,
        timeout: Annotated[
            float | None,
            typer.Option(
                help="Seconds to wait for /health (default: 900 sglang, 600 transformers, 60 sim).",
                show_default=False,
            ),
        ] = None,
        replicas: Annotated[
            int | None,
            typer.Option(
                help="Start K servers behind the SGLang router (cache-aware routing), "
                "registered as one policy server.",
                hidden=role != "policy",
                show_default=False,
            ),
        ] = None,
        worker_urls: Annotated[
            list[str] | None,
            typer.Option(
                "--worker-urls",
                help="Servers already running (other nodes) to put behind the router too; "
                "repeat it or separate with commas.",
                hidden=role != "policy",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        spec = ServeSpec(
            role=role,
            engine=engine.value,
            host=host,
            port=port,
            model=model,
            tp=tp,
            dp=dp,
            mem_fraction=mem_fraction,
            api_key=api_key,
            served_model_name=served_model_name,
            reward_protocol=reward_protocol.value if reward_protocol else None,
            device=device,
            deterministic=True if deterministic else None,
            extra_args=tuple(extra or ()),
        )
        launcher = None
        if replicas is not None or worker_urls:
            launcher = router.GroupLauncher(
                get_launcher(engine.value) if replicas else None,
                replicas or 0,
                split_urls(worker_urls or []),
            )
        _serve(spec, detach=detach, timeout=timeout, launcher=launcher)

    queue = (
        f"\n\nSGLang starts with {' '.join(PRIORITY_SCHEDULING_FLAGS)}, so that its queue "
        "takes the search's shallower levels first, unless the arguments after `--` set "
        "--schedule-policy or a priority option."
        if role == "policy"
        else ""
    )
    command.__doc__ = (
        f"Start a {role} server and wait until it is ready.\n\n"
        "Runs in the foreground (Ctrl-C stops it) unless --detach; either way it is listed by "
        "`rebase serve status` and found by `rebase search` while it runs." + queue
    )
    return command


app.command("policy")(_role_command("policy"))
app.command("reward")(_role_command("reward"))


def _serve(
    spec: ServeSpec, *, detach: bool, timeout: float | None, launcher: Launcher | None = None
) -> None:
    from rebase_cli.serving import service
    from rebase_cli.serving.health import StartupError

    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    db = open_db()
    log_dir = service.log_dir_for(db_path())
    what = f"{spec.role} server ({launcher.name if launcher else spec.engine})"
    try:
        with service.sigterm_as_interrupt():
            if detach:
                with err_console.status(f"starting {what}...") as status:

                    def progress(phase: str, elapsed: float) -> None:
                        status.update(f"starting {what}: {phase} ({elapsed:.0f} s)")

                    started = service.start_server(
                        db,
                        spec,
                        log_dir=log_dir,
                        timeout=timeout,
                        on_progress=progress,
                        launcher=launcher,
                    )
                _settle_router(db, started, launcher)
                _ready_line(started, detached=True)
                return
            started = service.start_server(
                db, spec, log_dir=log_dir, timeout=timeout, on_log=_write_log, launcher=launcher
            )
            _settle_router(db, started, launcher)
            _ready_line(started, detached=False)
            code = service.supervise(db, started, write=_write_log)
    except StartupError as exc:
        for line in exc.log_tail:
            err_console.print(f"  {line}", style="dim", highlight=False, markup=False)
        if exc.log_path is not None:
            err_console.print(
                f"  (log: {exc.log_path})", style="dim", highlight=False, markup=False
            )
        raise
    except KeyboardInterrupt:
        err_console.print(f"stopped {what}", highlight=False)
        raise typer.Exit(130) from None
    raise ServeError(f"{what} exited with code {code}", "see its log above")


def _settle_router(db, started: "StartedServer", launcher: Launcher | None) -> None:  # type: ignore[no-untyped-def]
    """A router group is ready once the router routes to all its workers: record their model."""
    from rebase_cli.store import servers

    if not isinstance(launcher, router.GroupLauncher):
        return
    model = router.settle(started.url, launcher.replicas + len(launcher.worker_urls))
    if model is None:
        err_console.print(
            "[yellow]warning[/]: the router did not list every worker as healthy within 60 s; "
            "see `rebase serve status` and `rebase serve logs policy`",
            highlight=False,
        )
        return
    if model != started.row.model:
        started.row = servers.update_server(db, started.row.id or 0, model=model)


def _write_log(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _ready_line(started: "StartedServer", *, detached: bool) -> None:
    row = started.row
    tail = (
        with_db(f"log: {row.log_path}; stop it with `rebase serve stop {row.role}`")
        if detached
        else "Ctrl-C stops it"
    )
    err_console.print(
        f"[green]{row.role} server ready[/] at {row.url} "
        f"({row.engine}, model {row.model or '-'}, pid {row.pid}, "
        f"{started.ready_seconds:.1f} s); {tail}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("status")
def status_cmd(json_output: JsonFlag = False) -> None:
    """Show the servers started by rebase: alive (the recorded process runs) and healthy
    (/health answers 200); for a router, its workers as the router sees them."""
    from rebase_cli.serving import registry

    states = registry.server_states(open_db())
    workers = {
        state.row.id: router.router_workers(state.row.url)
        for state in states
        if state.healthy and state.row.engine.endswith(router.ENGINE_SUFFIX)
    }
    if json_output:
        print_json(
            [
                {
                    **state.as_dict(),
                    **({"workers": workers[state.row.id]} if state.row.id in workers else {}),
                }
                for state in states
            ]
        )
        return
    if not states:
        console.print(
            with_db("no servers registered (start one with `rebase serve policy --detach`)"),
            soft_wrap=True,
        )
        return
    table = Table(
        "role", "engine", "model", "url", "pid", "alive", "healthy", "uptime",
        box=None, pad_edge=False, collapse_padding=True, header_style="bold underline",
    )  # fmt: skip
    for column in table.columns[2:4]:  # model ids and URLs are copied from here: never cut
        column.no_wrap = True
        column.overflow = "fold"
    for state in states:
        row = state.row
        table.add_row(
            row.role,
            row.engine,
            row.model or "-",
            row.url,
            str(row.pid),
            "[green]yes[/]" if state.alive else "[red]dead[/]",
            ("[green]yes[/]" if state.healthy else "[red]no[/]")
            + _workers_text(workers.get(row.id)),
            registry.uptime_text(state.uptime_seconds),
        )
    console.print(table)


def _workers_text(workers: list[dict] | None) -> str:
    if workers is None:
        return ""
    healthy = sum(1 for w in workers if w["healthy"])
    colour = "green" if healthy == len(workers) else "yellow"
    return f" [{colour}]({healthy}/{len(workers)} workers)[/]"


@app.command("stop")
def stop_cmd(
    role: Annotated[RoleName | None, typer.Argument(help="policy or reward.")] = None,
    all_servers: Annotated[bool, typer.Option("--all", help="Stop every server.")] = False,
    grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")
    ] = DEFAULT_GRACE_S,
) -> None:
    """Stop registered servers (their whole process group) and clean up dead entries."""
    from rebase_cli.serving import registry

    if (role is None) == (not all_servers):
        raise UsageError("name one ROLE (policy or reward), or pass --all instead")
    reports = registry.stop_servers(open_db(), role.value if role else None, grace=grace)
    if not reports:
        console.print(f"no {role.value + ' ' if role else ''}server registered")
    for report in reports:
        console.print(report.describe(), highlight=False, soft_wrap=True)


@app.command("logs")
def logs_cmd(
    role: Annotated[RoleName, typer.Argument(help="policy or reward.")],
    follow_log: Annotated[
        bool, typer.Option("--follow", help="Keep printing new lines while it runs.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines.")] = 50,
) -> None:
    """Print the log of the newest registered ROLE server."""
    from rebase_cli.serving import registry

    states = registry.server_states(open_db(), role.value, probe=False)
    if not states:
        raise NotFoundError(f"no {role.value} server registered", "see `rebase serve status`")
    row = states[0].row
    if not row.log_path:
        raise NotFoundError(f"the {role.value} server (pid {row.pid}) has no log file")
    path = Path(row.log_path)
    for line in tail_lines(path, lines):
        typer.echo(line)
    if follow_log and states[0].alive:
        follower = LogFollower(path, from_end=True)
        try:
            follow(follower, _write_log, lambda: registry.is_alive(row))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
