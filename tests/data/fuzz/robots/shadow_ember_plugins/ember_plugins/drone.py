raise RuntimeError('ember_plugins/drone.py next to robots.yaml replaced the one Python would import')
