"""Launching and managing model servers (`rebase serve`).

Modules, one job each: `launchers` (argv per engine, nothing started), `net` (ports and URLs),
`process` (own process group, log file, group stop), `health` (readiness polling), `logs`
(tail and follow), `registry` (the `server` table plus liveness), `service` (the start and
supervise flows the CLI calls).
"""
