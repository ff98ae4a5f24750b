raise RuntimeError('colorsys.py next to robots.yaml replaced the one Python would import')
