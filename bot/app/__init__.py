"""The running bot: `runtime` assembles the services and the delivery routes and runs start-up and
shutdown; `listeners` is the Bolt app and the request path (the replay guard as Bolt middleware,
the permission gate before every handler); `server` the HTTP face; `observability` the metrics;
`settings` the environment.
"""
