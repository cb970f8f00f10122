"""Policy serving: the pyzmq server of contract section 7 (the client is surgbot.hw.policy_client)."""
