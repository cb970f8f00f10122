"""Thin rclpy nodes, one core each."""
