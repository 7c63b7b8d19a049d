# An action: called with a name (the call's content) and `meta.args.times`.
#   xs action define ./store greet examples/greet.nu
#   echo -n bob | xs action call ./store greet --args '{"times": 2}'    # hello bob x2
{
  run: {|frame|
    let who = $in
    $"hello ($who) x($frame.meta.args.times? | default 1)"
  }
}
