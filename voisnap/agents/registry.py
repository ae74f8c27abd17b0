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
    active = false                           # known, but refused until re-activated
                                             # (``enabled = false`` says the same)

    [agents.load]
    backend = "synthetic"                    # timestamped tokens, for load tests
    tokens = 100
    token_delay = 0.05

An unknown or inactive agent is refused with a clear error.
"""

from __future__ import annotations

import os
import tomllib
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
    if backend == "builtin":
        return AgentEntry(BuiltinAgent(agent_id, token_delay), active, tools)
    if backend == "openai":
        api_key = table.get("api_key")
        if "api_key_env" in table:
            api_key = os.environ.get(table["api_key_env"])
        config = OpenAIConfig(
            base_url=str(table["base_url"]),
            model=str(table["model"]),
            api_key=api_key,
            system_prompt=table.get("system_prompt"),
            temperature=table.get("temperature"),
        )
        return AgentEntry(OpenAIAgent(agent_id, config), active, tools)
    if backend == "synthetic":
        tokens = int(table.get("tokens", 100))
        delay = float(table.get("token_delay", token_delay))
        return AgentEntry(SyntheticAgent(agent_id, tokens, delay), active, tools)
    raise ValueError(f"unknown backend {backend!r} (builtin, openai or synthetic)")


def _tool_set(table: dict[str, Any]) -> ToolSet:
    tools = check_tool_names(table.get("tools", list(TOOL_NAMES)), "tools")
    approval = check_tool_names(
        table.get("require_approval", sorted(DEFAULT_APPROVAL)), "require_approval"
    )
    return ToolSet(tools, frozenset(approval))
