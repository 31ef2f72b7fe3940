"""Subcommands of ``ros3d-agent`` (see ros3d_agent.cli). Each module imports heavy libraries lazily."""
