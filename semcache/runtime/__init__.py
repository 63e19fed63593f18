"""What the services share and nothing else imports: server bootstrap, the multiplexed
internal streams, admission control, the membership registry, typed configuration, request
validation, the hash ring and the background loops. The SDK never loads it."""
