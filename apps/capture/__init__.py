"""Call capture: the SIP messages of a call kept as a pcap file, and its ladder diagram."""
