"""Ground-layer safety: one filter for every command path, and the supervisor core.

`checks` holds the pure checks (finite, limits, step, workspace, staleness),
`filter.SafetyFilter` combines them for one command stream with counters and
rate-limited reporting, `supervisor.SupervisorCore` is the watchdog/e-stop
state machine behind `/safety/state` (contract section 8).  ROS-free.
"""
