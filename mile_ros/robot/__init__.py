"""Real-robot I/O without rclpy: safety layer, WidowX backends, camera, R3M encoder, gamepad.

Device libraries (interbotix, OpenCV, torchvision, pygame) are imported where they are used, so each
piece loads on a machine that has only its own dependency.
"""
