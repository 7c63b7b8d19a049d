# A handler that counts `tick` frames, from the first one, and emits the running count.
#   xs handler register ./store counter examples/counter.nu
#   xs append ./store tick < /dev/null; xs last ./store counter.out
{
  start: "first"
  topics: "tick"
  initial: 0
  run: {|frame, state|
    let n = $state + 1
    {out: {count: $n}, next: $n}
  }
}
