"""Links to hardware (or its twin): unitree DDS, CRTK ROS 2 client."""
