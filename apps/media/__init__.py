"""The media half of a node: FreeSWITCH's configuration, its events, recordings and announcements."""
