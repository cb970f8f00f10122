"""Ground-layer safety: one filter for every command path, the supervisor core, and the state watch.

`checks` holds the pure checks (finite, limits, step, workspace, staleness)
and the shaping helpers (clip to the box, shorten a step),
`filter.PoseSafetyFilter` refuses a bad pose command, `filter.PoseLimiter`
shapes a pose stream (the teleop mapper and the policy gate), both counting
each cause with rate-limited reporting; `supervisor.SupervisorCore` is the
watchdog/e-stop state machine behind `/safety/state` (contract section 8) and
`state_watch.SafetyStateWatch` is what every command source knows of that
state (fail-safe: a silent supervisor holds).  ROS-free.
"""
