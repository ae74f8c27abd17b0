"""Which agents exist: ``sophon`` always, and those of the agents file.

The agents file (``voisnap serve --agents-file agents.toml``) names agents by
the id clients send as ``agentId``::

    [agents.writer]
    backend = "openai"                       # any OpenAI-compatible endpoint
    base_url = "https://api.example.com/v1"
    model = "some-model"
    api_key_env = "WRITER_API_KEY"           # or api_key = "..." (keep the file private)
    system_prompt = "You are terse."

    tools = ["calculator", "ask_user"]       # the tools it may call (default: all of them)
    require_approval = ["calculator"]        # ...of which these wait for a person's approval
                                             # (default: ["delete_note"])

    [agents.helper]
    backend = "builtin"                      # another name for the built-in agent
    token_delay = 0.02                       # its pace (default: --agent-token-delay)
    active = false                           # known, but refused until re-activated
                                             # (``enabled = false`` says the same)

    [agents.load]
    backend = "synthetic"                    # timestamped tokens, for load tests
    tokens = 100
    token_delay = 0.05

Every agent may also say (docs/v1-stream.md)::

    max_steps = 8                # steps that call tools in one chain (default: --agent-max-steps)
    max_continuations = 2        # chains after the first, each announced by turn.continuing
    price_input_per_mtok = 3.0   # USD per million tokens read (turn.done's cost_usd); 0 if absent
    price_output_per_mtok = 15.0 # USD per million tokens written
    system_prompt = "..."        # what the model is told first (the openai backend sends it;
                                 # debug.system_prompt shows it to administrators)

An unknown or inactive agent is refused with a clear error.
"""

from __future__ import annotations

import os
import tomllib
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from .base import Agent
from .builtin import BuiltinAgent
from .openai import OpenAIAgent, OpenAIConfig
from .synthetic import SyntheticAgent
from .tools import DEFAULT_APPROVAL, TOOL_NAMES, ToolSet, check_tool_names

DEFAULT_AGENT = "sophon"


class UnknownAgent(Exception):
    """No active agent has that id; the text is safe to show."""


class InactiveAgent(UnknownAgent):
    """The agent exists, but is not active (``active``/``enabled = false``)."""


@attrs.frozen
class AgentEntry:
    agent: Agent
    active: bool = True
    tools: ToolSet = ToolSet()
    budget: Budget = attrs.field(factory=lambda: Budget())
    system_prompt: str | None = None


@attrs.frozen
class Budget:
    """How far one task of an agent may go, and what its tokens cost."""

    max_steps: int | None = None
    """Steps that call tools in one chain; None: the server's ``--agent-max-steps``."""
    max_continuations: int = 0
    """Further chains once a chain has used its steps (``turn.continuing``)."""
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        cost = input_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok
        return round(cost / 1_000_000, 9)


class AgentRegistry:
    def __init__(self, entries: dict[str, AgentEntry]) -> None:
        self._entries = entries

    def get(self, agent_id: str) -> Agent:
        return self.entry(agent_id).agent

    def entry(self, agent_id: str) -> AgentEntry:
        entry = self._entries.get(agent_id)
        if entry is None:
            raise UnknownAgent(f"Agent '{agent_id}' does not exist or is not active.")
        if not entry.active:
            raise InactiveAgent(f"Agent '{agent_id}' does not exist or is not active.")
        return entry

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._entries


def load_agents(path: Path | None, token_delay: float) -> AgentRegistry:
    """The built-in agent, plus every agent the file configures (ValueError,
    naming the file and the agent, for a file that cannot be used)."""
    entries = {DEFAULT_AGENT: AgentEntry(BuiltinAgent(DEFAULT_AGENT, token_delay))}
    if path is None:
        return AgentRegistry(entries)
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"agents file {path}: {error}") from None
    agents = document.get("agents", {})
    if not isinstance(agents, dict):
        raise ValueError(f"agents file {path}: [agents] must be a table of agents")
    for agent_id, table in agents.items():
        if not isinstance(table, dict):
            raise ValueError(f"agents file {path}: [agents.{agent_id}] must be a table")
        try:
            entries[agent_id] = _entry(agent_id, table, token_delay)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"agents file {path}: agent '{agent_id}': {error}") from None
    return AgentRegistry(entries)


def _entry(agent_id: str, table: dict[str, Any], token_delay: float) -> AgentEntry:
    backend = table.get("backend", "builtin")
    if "active" in table and "enabled" in table:
        raise ValueError("give 'active' or 'enabled' (the same thing), not both")
    active = table.get("active", table.get("enabled", True))
    if not isinstance(active, bool):
        raise ValueError(f"'active' (or 'enabled') must be true or false, not {active!r}")
    tools = _tool_set(table)
    budget = _budget(table)
    system_prompt = table.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError("'system_prompt' must be a string")
    entry = partial(AgentEntry, active=active, tools=tools, budget=budget,
                    system_prompt=system_prompt)
    delay = float(table.get("token_delay", token_delay))
    if backend == "builtin":
        return entry(BuiltinAgent(agent_id, delay))
    if backend == "openai":
        api_key = table.get("api_key")
        if "api_key_env" in table:
            api_key = os.environ.get(table["api_key_env"])
        config = OpenAIConfig(
            base_url=str(table["base_url"]),
            model=str(table["model"]),
            api_key=api_key,
            system_prompt=system_prompt,
            temperature=table.get("temperature"),
        )
        return entry(OpenAIAgent(agent_id, config))
    if backend == "synthetic":
        tokens = int(table.get("tokens", 100))
        return entry(SyntheticAgent(agent_id, tokens, delay))
    raise ValueError(f"unknown backend {backend!r} (builtin, openai or synthetic)")


def _budget(table: dict[str, Any]) -> Budget:
    max_steps = table.get("max_steps")
    if max_steps is not None and not _is_whole(max_steps, 1):
        raise ValueError(f"'max_steps' must be a whole number of at least 1, not {max_steps!r}")
    continuations = table.get("max_continuations", 0)
    if not _is_whole(continuations, 0):
        raise ValueError(
            f"'max_continuations' must be a whole number of at least 0, not {continuations!r}"
        )
    prices = []
    for name in ("price_input_per_mtok", "price_output_per_mtok"):
        price = table.get(name, 0)
        if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price < 1e9:
            raise ValueError(f"'{name}' must be a number of USD, at least 0, not {price!r}")
        prices.append(float(price))
    return Budget(max_steps, continuations, *prices)


def _is_whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= 10_000


def _tool_set(table: dict[str, Any]) -> ToolSet:
    tools = check_tool_names(table.get("tools", list(TOOL_NAMES)), "tools")
    approval = check_tool_names(
        table.get("require_approval", sorted(DEFAULT_APPROVAL)), "require_approval"
    )
    return ToolSet(tools, frozenset(approval))
