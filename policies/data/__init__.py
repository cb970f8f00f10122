"""Datasets: expert demonstrations from the Gymnasium environments and live ROS topics -> LeRobotDataset v3."""
