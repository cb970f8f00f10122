"""MuJoCo twins of the G1 and the PSM that speak the hardware's own interfaces."""
