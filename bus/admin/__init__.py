"""Operator tooling: inspect what every stream, group and dead-letter stream holds, fix what is
stuck (dead letters, group positions, trimming), and draw the flow map."""
