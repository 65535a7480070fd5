# (prefix, viewset, basename) of the fraud app's API, registered by smartswitch.api_urls.
routes: list = []
