raise RuntimeError('a folder ember_plugins/ next to robots.yaml replaced the one Python would import')
