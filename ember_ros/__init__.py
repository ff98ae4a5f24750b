"""Ember ROS 2 adapter: the selector node that feeds robot selections to a fleet manager."""
