"""The engine: runs of checks, records, scenarios, the player, explore."""
