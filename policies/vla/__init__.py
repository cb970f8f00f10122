"""SurgVLA: surgbot's vision-language-action policy, laid out as a LeRobot policy.

`configuration_surgvla` (SurgVLAConfig, policy type `surgvla`),
`modeling_surgvla` (SurgVLAPolicy), `processor_surgvla` (pre/post-processors),
`language` (frozen MiniLM instruction encoder), `runtime` (checkpoint -> one
inference call, used by the server and the benchmark), `train` (the
`surgbot policy train` wrapper over LeRobot's training step).  Importing this
package imports nothing heavy: the CLI stays cheap.
"""
