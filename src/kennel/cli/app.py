"""The root Typer app and its error handling: a KennelError becomes one line on stderr and the
exit code from ``kennel.errors.STATUS``."""

from __future__ import annotations

import getpass
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import typer
from typer.core import TyperGroup

# typer >= 0.2x carries its own copy of click, whose errors are not click's (re-exported for
# cli.main, which catches them around the whole command line)
try:
    from typer._click.core import Context
    from typer._click.exceptions import BadParameter, NoSuchOption
    from typer._click.exceptions import ClickException as ClickException
    from typer._click.exceptions import NoArgsIsHelpError as NoArgsIsHelpError
    from typer._click.exceptions import UsageError as UsageError
except ImportError:  # pragma: no cover - an older typer on plain click
    from click.core import Context  # type: ignore[assignment]
    from click.exceptions import (  # type: ignore[assignment]
        BadParameter,
        NoArgsIsHelpError,
        NoSuchOption,
    )
    from click.exceptions import ClickException as ClickException  # type: ignore[assignment]
    from click.exceptions import UsageError as UsageError  # type: ignore[assignment]

from kennel.display import printable, shown, text_problem
from kennel.errors import (
    AuthError,
    ConfigError,
    KennelError,
    ReleaseRefusedError,
    did_you_mean,
    status_of,
)

if TYPE_CHECKING:  # imported when a command runs, so that `kennel --help` starts at once
    from kennel.serve.auth import Identity
    from kennel.serve.runtime import Predictor
    from kennel.wiring import Workspace


_NOT_ONE_OF = re.compile(r"'(?P<given>[^']*)' is not one of (?P<choices>.+?)\.?$")


# Line breaks, with the blanks around them: one line, whatever a library's message holds.
# Other whitespace is kept as it is (a path may hold two spaces in a row).
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n\v\f\x85\u2028\u2029]+[ \t]*")


def say(message: str, prefix: str = "error: ") -> None:
    """``message`` as one line on stderr, the way every failure leaves the command line: its
    line breaks made spaces, every URL's password shown as ``***`` and control characters
    escaped (a message may quote a URL, a file name or a library's words about either)."""
    typer.echo(prefix + shown(_LINE_BREAKS.sub(" ", message).strip()), err=True)


def usage_line(exc: UsageError) -> str:
    """A usage error as one line: what was wrong, the closest valid choice, where help is."""
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")
    hint = ""
    found = _NOT_ONE_OF.search(message)
    if found:
        hint = did_you_mean(found["given"], re.findall(r"'([^']*)'", found["choices"]))
    elif isinstance(exc, NoSuchOption) and exc.possibilities:
        message = message.split(" (Possible options:")[0]
        hint = did_you_mean(exc.option_name, exc.possibilities)
    elif message.startswith("No such command") and "Did you mean" not in message and exc.ctx:
        given = re.findall(r"'([^']*)'", message)
        group = exc.ctx.command
        if given and hasattr(group, "list_commands"):
            hint = did_you_mean(given[0], group.list_commands(exc.ctx))
    where = exc.ctx.command_path if exc.ctx is not None else "kennel"
    return f"error: {message.rstrip('.')}{hint} (see {where} --help)"


# `kennel --help` lists the commands by stage of the lifecycle, in this order
DATA, BUILD, DEPLOY = "Data", "Build", "Deploy"
MONITOR, PATTERNS, PROJECT = "Monitor and govern", "Video and serving patterns", "Project"
PANELS = (DATA, BUILD, DEPLOY, MONITOR, PATTERNS, PROJECT)


class KennelGroup(TyperGroup):
    """Every failure is one line on stderr: a KennelError with the exit code from
    ``kennel.errors.STATUS``, a usage error (bad option, value or command) with exit 2."""

    def list_commands(self, ctx: Any) -> list[str]:
        order = {panel: i for i, panel in enumerate(PANELS)}
        return sorted(  # stable: within a stage, the order they were added in
            super().list_commands(ctx),
            key=lambda n: order.get(str(getattr(self.commands[n], "rich_help_panel", "")), 0),
        )

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, TyperGroup):
            _refuse_unset_values(command, ctx, rest)
        return name, command, rest

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except KennelError as exc:
            say(str(exc))
            raise typer.Exit(status_of(exc).exit_code) from None
        except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
            raise typer.Exit(status_of(KennelError()).exit_code) from None
        except OSError as exc:  # a path given that the system refuses: no folder, a file
            say(os_reason(exc))
            # a file named where a folder must be is a usage error, as ConfigError's are
            usage = isinstance(exc, FileExistsError | NotADirectoryError)
            code = status_of(ConfigError("") if usage else KennelError()).exit_code
            raise typer.Exit(code) from None
        except NoArgsIsHelpError as exc:  # the help is printed already; nothing was wrong
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:
            say(usage_line(exc), prefix="")
            raise typer.Exit(2) from None


def os_reason(exc: OSError) -> str:
    """An OSError as one line: the path it names (not a temporary file's) and the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileExistsError):  # what mkdir says of a file where a folder must be
        reason = "it exists and is not a folder"
    elif isinstance(exc, NotADirectoryError):
        reason = "a part of the path is a file, not a folder"
    if exc.filename is None:
        return reason
    return f"cannot use {exc.filename}: {reason}"


def _takes(param: Any, kind: type) -> bool:
    """Whether a parameter's annotation is ``kind`` or holds it (``list[Path]``, ``float|None``)."""

    def holds(annotation: Any) -> bool:
        if isinstance(annotation, type):
            return issubclass(annotation, kind)
        return any(holds(arg) for arg in get_args(annotation))

    return holds(getattr(param, "type_descriptor", param).annotation)


def _is_nan(word: object) -> bool:
    try:
        return isinstance(word, str) and math.isnan(float(word))
    except ValueError:
        return False


# the largest id or sequence number a metadata column holds on every backend: kennel.db's
# MAX_NUMBER (PostgreSQL's INTEGER), repeated so that `kennel --help` need not load SQLAlchemy
MAX_NUMBER = 2**31 - 1
PATH = "<path>"  # the metavar of a path option kept as text, as help shows a Path's


def _refuse_unset_values(command: Any, parent: Any, args: list[str]) -> None:
    """An empty path argument or option is a mistake (a variable that was not set), not the
    current folder, which is what ``Path("")`` would silently mean; and a number given as
    ``nan`` passes every range check (no comparison with NaN is true), so ``--fps nan`` would
    reach the code as if it were in range. Checked on the words as given, before typer turns
    them into values, for every command at once."""
    # a path kept as text (to see a trailing slash: ``fsutil.page_target``) says <path>
    paths = [p for p in command.params if _takes(p, Path) or getattr(p, "metavar", "") == PATH]
    floats = [p for p in command.params if _takes(p, float)]
    if not (paths or floats) or parent.resilient_parsing:
        return
    ctx = Context(command, parent=parent, info_name=command.name, resilient_parsing=True)
    try:
        given, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except UsageError:
        return  # the real parse reports it, in one line
    for param in paths + floats:
        value = given.get(param.name)
        words = value if isinstance(value, list | tuple) else [value]
        if param in paths and "" in words:
            raise BadParameter("an empty path; use . for the current folder", ctx, param)
        if param in floats and any(_is_nan(w) for w in words):
            raise BadParameter("not a number (nan); give a number in range", ctx, param)


@contextmanager
def interruptible(hint: str) -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does (a KeyboardInterrupt: a training run is marked
    ``interrupted``, its checkpoint kept), and either ends as one line on stderr, ``hint``
    saying how to go on, with exit status 143 (SIGTERM) or 130 (Ctrl-C). Once one has come,
    both are ignored until the command has cleaned up: a terminal's second Ctrl-C, pressed
    while the database connections closed, had printed a pool's traceback."""
    got: list[int] = []
    caught = (signal.SIGTERM, signal.SIGINT)

    def stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM:
            got.append(signum)
        for each in caught:  # a second one must not cut the cleanup
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = {each: signal.signal(each, stop) for each in caught} if main else {}
    try:
        yield
    except KeyboardInterrupt:
        say(f"interrupted{' by SIGTERM' if got else ''}; {hint}")
        raise typer.Exit(143 if got else 130) from None
    finally:
        for each, handler in previous.items():  # None: a handler not set from Python (default)
            signal.signal(each, handler if handler is not None else signal.SIG_DFL)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=KennelGroup,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-C",
        envvar="KENNEL_PROJECT",
        help="Project folder holding kennel.yaml (default: the current directory).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Replace an existing file even if it is not a page kennel wrote."),
]
ReplaceOption = Annotated[
    bool, typer.Option("--force", help="Replace the file if it exists already.")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="KENNEL_TOKEN", help="A token whose role allows this."),
]
UngatedOption = Annotated[
    bool,
    typer.Option(
        "--allow-failed-gates",
        help="Use a --model version that failed its quality gates (tests, never production).",
    ),
]
MAX_NOTE = 500  # a note or a reason, as the dashboard's forms take them
MAX_LABEL = 128  # a name someone types: a camera's


def _text_option(help: str, names: tuple[str, ...], *, limit: int, lines: bool) -> Any:
    def check(value: str | None) -> str | None:
        problem = None if value is None else text_problem(value, limit=limit, lines=lines)
        if problem:
            raise typer.BadParameter(problem)
        return value

    return typer.Option(*names, help=help, callback=check)


def note_option(help: str, *names: str) -> Any:
    """A free-text option kept in a history or the audit trail (a note, a reason)."""
    return _text_option(help, names, limit=MAX_NOTE, lines=True)


def label_option(help: str, *names: str) -> Any:
    """A short name someone types (a camera's): one line, no control character."""
    return _text_option(help, names, limit=MAX_LABEL, lines=False)


EngineName = Literal["local", "ray"]  # as kennel.wiring.Workspace.ingestor and .scorer
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster HOST:PORT or 'auto' (ray only; default RAY_ADDRESS, else a new "
        "local Ray).",
        show_default=False,
    ),
]


def acting(ws: Workspace, token: str | None) -> Identity:
    """Who runs a state-changing command: the holder of ``token``; without one, the local
    operator, but only when kennel.yaml grants that role (``auth.local_role``)."""
    if token:
        who = ws.tokens.identify(token)
        if who is None:
            raise AuthError("the token is unknown or revoked")
        return who
    from kennel.serve.auth import Identity

    role = ws.project.config.auth.local_role
    if role is None:
        raise AuthError(
            "this command needs a token whose role allows it: pass --token or set KENNEL_TOKEN "
            "(see kennel token create), or set auth.local_role in kennel.yaml for a "
            "single-user project"
        )
    return Identity("local", f"local:{login_name()}", role)


def login_name() -> str:
    """Who is logged in, as histories and the audit trail record it: from ``LOGNAME`` or
    ``USER`` as anyone may set them, so escaped and bounded."""
    return printable(getpass.getuser()[:64])  # cut first: never half an escape


@contextmanager
def opened(project: Path | None) -> Iterator[Workspace]:
    """The project's workspace for one command; its database connections closed afterwards."""
    from kennel.wiring import Workspace

    ws = Workspace.load(project)
    ws.on_audit_failure = _warn
    try:
        yield ws
    finally:
        ws.close()


def _warn(message: str) -> None:
    say(message, prefix="warning: ")


def model_ref(ws: Workspace, model: str | None, env: str | None, *, ungated: bool = False) -> str:
    """``--model NAME@VERSION`` or ``--env ENV`` (the model that environment's alias names);
    a version that failed its quality gates only with ``ungated`` (--allow-failed-gates): what
    these commands score reaches others (a shared table, a feed, a camera's events, a wheel)."""
    if (model is None) == (env is None):
        raise ConfigError("give exactly one of --model NAME@VERSION or --env ENV")
    if ungated and env is not None:
        raise ConfigError("--allow-failed-gates goes with --model: what --env serves has passed")
    if env is not None:  # what an environment serves must have passed its gates
        config = ws.project.config
        from kennel.deploy.policy import PolicyGate  # not the release manager: no PyTorch

        chosen = ws.registry.resolve(f"{config.model.name}@{config.environment(env).alias}")
        PolicyGate(config, ws.db, ws.registry).serves(chosen)
        return chosen.ref
    assert model is not None
    chosen = ws.registry.resolve(model)
    if not chosen.gates_passed and not ungated:
        raise ReleaseRefusedError(
            f"{chosen.ref} failed its quality gates ({'; '.join(chosen.gate_reasons)}): "
            "pass --allow-failed-gates to use it anyway"
        )
    return chosen.ref


@contextmanager
def served_model(
    ws: Workspace, model: str | None, env: str | None, *, ungated: bool = False
) -> Iterator[Callable[[], Predictor]]:
    """A fixed model (``--model``) or the alias an environment serves, followed live (its
    releases and rollbacks swap the Predictor the callable gives)."""
    from kennel.serve.holder import ModelHolder

    ref = model_ref(ws, model, env, ungated=ungated)
    if env is None:
        predictor = ws.predictor(ref)
        yield lambda: predictor
        return
    holder = ModelHolder.following(ws.registry, ws.project.config, env)
    holder.start()

    def current() -> Predictor:
        assert holder.current is not None
        return holder.current

    try:
        if holder.current is None:
            raise ConfigError(f"environment {env!r} serves no model yet: {holder.last_error}")
        yield current
    finally:
        holder.stop()
