"""Packet captures: the scapy Gearman layer, reading, replaying and writing pcaps."""
