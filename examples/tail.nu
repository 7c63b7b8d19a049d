# A generator that turns each new line of a log file into a `applog.recv` frame.
#   XS_TAIL_FILE=/var/log/app.log xs generator spawn ./store applog examples/tail.nu
#   xs cat ./store -f -T applog.recv
# The file comes from the daemon's environment ($env.XS_TAIL_FILE), default ./app.log.
{
  run: {||
    let file = ($env.XS_TAIL_FILE? | default "app.log")
    ^tail -n 0 -F $file
  }
}
