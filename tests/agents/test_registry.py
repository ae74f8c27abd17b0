"""``load_agents``: ``sophon`` always, plus the agents of a TOML agents file.

An unknown or inactive agent is refused with ``UnknownAgent`` and a message
safe to show; a file that cannot be used is a ``ValueError`` naming the file
(and the agent, when one is at fault), so ``voisnap serve`` can say what to fix.
API keys may come from the environment (``api_key_env``). Each agent lists the
tools it may call (``tools``, default: all of them, ``ask_user`` included) and
those that wait for a person's approval (``require_approval``, default
``["delete_note"]``); an unknown tool name is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voisnap.agents.builtin import BuiltinAgent
from voisnap.agents.openai import OpenAIAgent, OpenAIConfig
from voisnap.agents.registry import DEFAULT_AGENT, UnknownAgent, load_agents
from voisnap.agents.synthetic import SyntheticAgent
from voisnap.agents.tools import TOOL_NAMES, ToolSet

AGENTS_FILE = """
[agents.helper]
backend = "builtin"

[agents.writer]
backend = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "tiny-model"
api_key_env = "VOISNAP_TEST_WRITER_KEY"
system_prompt = "You are terse."
temperature = 0.25

[agents.plain]
base_url = "unused"

[agents.load]
backend = "synthetic"
tokens = 3
token_delay = 0.25

[agents.retired]
backend = "builtin"
active = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_registry_without_a_file_has_sophon() -> None:
    registry = load_agents(None, token_delay=0.1)
    agent = registry.get(DEFAULT_AGENT)
    assert DEFAULT_AGENT == "sophon"
    assert isinstance(agent, BuiltinAgent) and agent.agent_id == "sophon"
    assert "sophon" in registry and "writer" not in registry


def test_registry_loads_builtin_openai_and_synthetic_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOISNAP_TEST_WRITER_KEY", "sk-from-env")
    registry = load_agents(write(tmp_path, AGENTS_FILE), token_delay=0.1)

    assert isinstance(registry.get("sophon"), BuiltinAgent)
    helper = registry.get("helper")
    assert isinstance(helper, BuiltinAgent) and helper.agent_id == "helper"
    plain = registry.get("plain")  # no backend: the built-in one
    assert isinstance(plain, BuiltinAgent) and plain.agent_id == "plain"
    load = registry.get("load")
    assert isinstance(load, SyntheticAgent) and load.agent_id == "load"

    writer = registry.get("writer")
    assert isinstance(writer, OpenAIAgent) and writer.agent_id == "writer"
    assert writer._config == OpenAIConfig(
        base_url="http://127.0.0.1:9/v1",
        model="tiny-model",
        api_key="sk-from-env",
        system_prompt="You are terse.",
        temperature=0.25,
    )


def test_registry_api_key_env_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[agents.a]\nbackend = "openai"\nbase_url = "u"\nmodel = "m"\n'
        'api_key = "sk-in-file"\napi_key_env = "VOISNAP_TEST_KEY_A"\n'
        '[agents.b]\nbackend = "openai"\nbase_url = "u"\nmodel = "m"\napi_key = "sk-in-file"\n',
    )
    monkeypatch.setenv("VOISNAP_TEST_KEY_A", "sk-env")
    registry = load_agents(path, 0.1)
    assert registry.get("a")._config.api_key == "sk-env"  # type: ignore[attr-defined]
    assert registry.get("b")._config.api_key == "sk-in-file"  # type: ignore[attr-defined]

    monkeypatch.delenv("VOISNAP_TEST_KEY_A")
    unset = load_agents(path, 0.1).get("a")
    assert unset._config.api_key is None  # type: ignore[attr-defined]


def test_registry_refuses_inactive_and_unknown_agents(tmp_path: Path) -> None:
    registry = load_agents(write(tmp_path, AGENTS_FILE), token_delay=0.1)
    assert "retired" in registry  # known...
    with pytest.raises(UnknownAgent) as inactive:
        registry.get("retired")  # ...but refused
    with pytest.raises(UnknownAgent) as unknown:
        registry.get("nobody")
    assert str(inactive.value) == "Agent 'retired' does not exist or is not active."
    assert str(unknown.value) == "Agent 'nobody' does not exist or is not active."


@pytest.mark.parametrize(
    ("text", "agent", "detail"),
    [
        ("[agents.writer\n", None, ""),
        ("agents = 3\n", None, "[agents] must be a table"),
        ("[agents]\nwriter = 5\n", None, "[agents.writer] must be a table"),
        ('[agents.writer]\nbackend = "openai"\nbase_url = "u"\n', "writer", "model"),
        ('[agents.writer]\nbackend = "openai"\nmodel = "m"\n', "writer", "base_url"),
        ('[agents.odd]\nbackend = "telepathy"\n', "odd", "unknown backend 'telepathy'"),
        ('[agents.load]\nbackend = "synthetic"\ntokens = "many"\n', "load", "many"),
    ],
    ids=["not-toml", "agents-not-table", "agent-not-table", "no-model", "no-url",
         "unknown-backend", "bad-number"],
)
def test_registry_bad_file_names_the_file_and_the_agent(
    tmp_path: Path, text: str, agent: str | None, detail: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as caught:
        load_agents(path, token_delay=0.1)
    message = str(caught.value)
    assert message.startswith(f"agents file {path}: ")
    if agent is not None:
        assert f"agent '{agent}'" in message
    assert detail in message


def test_registry_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ValueError, match=r"agents file .*nowhere\.toml"):
        load_agents(path, token_delay=0.1)


def test_registry_active_must_be_a_boolean(tmp_path: Path) -> None:
    """``active = "false"`` is truthy for ``bool()``: an agent the file means to
    switch off would be served."""
    path = write(tmp_path, '[agents.retired]\nbackend = "builtin"\nactive = "false"\n')
    try:
        registry = load_agents(path, token_delay=0.1)
    except ValueError as error:
        assert "agent 'retired'" in str(error)
        return
    with pytest.raises(UnknownAgent):
        registry.get("retired")


# -- tools and approvals ---------------------------------------------------------------------------


def test_registry_default_tools_are_all_of_them_with_delete_note_approved(
    tmp_path: Path,
) -> None:
    registry = load_agents(write(tmp_path, AGENTS_FILE), token_delay=0.1)
    for agent_id in ("sophon", "helper", "writer", "plain", "load"):
        tools = registry.entry(agent_id).tools
        assert tools == ToolSet(), agent_id
        assert tools.tools == TOOL_NAMES and "ask_user" in tools.tools
        assert tools.require_approval == frozenset({"delete_note", "run_on_node"})
    assert load_agents(None, token_delay=0.1).entry("sophon").tools == ToolSet()


def test_registry_an_agent_lists_its_tools_and_approvals(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agents.writer]\nbackend = "openai"\nbase_url = "u"\nmodel = "m"\n'
        'tools = ["calculator", "ask_user"]\nrequire_approval = ["calculator"]\n'
        '[agents.trusting]\nrequire_approval = []\n'
        '[agents.careful]\nrequire_approval = ["add_note", "delete_note"]\n',
    )
    registry = load_agents(path, token_delay=0.1)
    writer = registry.entry("writer").tools
    assert writer.tools == ("calculator", "ask_user")
    assert [spec.name for spec in writer.specs()] == ["calculator", "ask_user"]
    assert writer.require_approval == frozenset({"calculator"})  # replaces the default
    trusting = registry.entry("trusting").tools
    assert trusting.tools == TOOL_NAMES and not trusting.needs_approval("delete_note")
    careful = registry.entry("careful").tools
    assert careful.require_approval == frozenset({"add_note", "delete_note"})


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ('tools = ["calculator", "send_email"]', "'tools' names unknown tools ['send_email']"),
        ('require_approval = ["rm_rf"]', "'require_approval' names unknown tools ['rm_rf']"),
        ('tools = "calculator"', "'tools' must be a list of tool names"),
        ("require_approval = [1]", "'require_approval' must be a list of tool names"),
    ],
    ids=["unknown-tool", "unknown-approval", "tools-not-a-list", "approval-not-names"],
)
def test_registry_unknown_tools_name_the_file_and_the_agent(
    tmp_path: Path, line: str, detail: str
) -> None:
    path = write(tmp_path, f'[agents.helper]\nbackend = "builtin"\n{line}\n')
    with pytest.raises(ValueError) as caught:
        load_agents(path, token_delay=0.1)
    message = str(caught.value)
    assert message.startswith(f"agents file {path}: agent 'helper': ")
    assert detail in message


def test_registry_entry_of_an_inactive_or_unknown_agent_is_refused(tmp_path: Path) -> None:
    registry = load_agents(write(tmp_path, AGENTS_FILE), token_delay=0.1)
    for agent_id in ("retired", "nobody"):
        with pytest.raises(UnknownAgent, match=f"^Agent '{agent_id}' does not exist"):
            registry.entry(agent_id)


def test_registry_reads_budgets_prices_and_system_prompts(tmp_path: Path) -> None:
    registry = load_agents(write(tmp_path, """
[agents.costly]
backend = "builtin"
max_steps = 3
max_continuations = 2
price_input_per_mtok = 3
price_output_per_mtok = 15.5
system_prompt = "Count the cost."
"""), 0.1)
    costly, sophon = registry.entry("costly"), registry.entry(DEFAULT_AGENT)
    assert (costly.budget.max_steps, costly.budget.max_continuations) == (3, 2)
    assert (costly.budget.price_input_per_mtok, costly.budget.price_output_per_mtok) == (3, 15.5)
    assert costly.system_prompt == "Count the cost."
    # Absent: the server's step budget, no continuation, free, no prompt.
    assert (sophon.budget.max_steps, sophon.budget.max_continuations) == (None, 0)
    assert sophon.budget.cost_usd(1000, 1000) == 0 and sophon.system_prompt is None


@pytest.mark.parametrize("line, says", [
    ("max_steps = 0", "max_steps"),
    ("max_steps = true", "max_steps"),
    ("max_steps = 2.5", "max_steps"),
    ("max_continuations = -1", "max_continuations"),
    ('max_continuations = "3"', "max_continuations"),
    ("price_input_per_mtok = -1", "price_input_per_mtok"),
    ('price_output_per_mtok = "free"', "price_output_per_mtok"),
    ("price_output_per_mtok = nan", "price_output_per_mtok"),
    ("system_prompt = 5", "system_prompt"),
])
def test_registry_refuses_a_bad_budget_naming_the_field(
    tmp_path: Path, line: str, says: str
) -> None:
    with pytest.raises(ValueError) as refused:
        load_agents(write(tmp_path, f'[agents.bad]\nbackend = "builtin"\n{line}\n'), 0.1)
    assert "agent 'bad'" in str(refused.value) and says in str(refused.value)
