# xs.nu: the xs store commands for an interactive Nushell session. Each one runs the `xs`
# binary, which talks to the daemon over its socket. The store is $env.XS_ADDR (a store dir,
# a socket, :port or host:port), else ~/.local/share/xs/store.
#
#   use xs.nu *
#   "hi" | .append chat --meta {u: bob}
#   .cat -T chat | last
#   .last chat | .cas $in.hash

def xs-addr [] {
  $env.XS_ADDR? | default ($env.HOME | path join ".local/share/xs/store")
}

# Read frames (history; with --follow, then xs.threshold and live frames).
export def .cat [
  --follow (-f)            # keep reading new frames
  --pulse (-p): int        # while following, an xs.pulse frame every this many ms
  --new (-n)               # only frames appended from now on
  --after (-a): string     # start after this id
  --from: string           # start at this id
  --limit: int             # at most this many frames
  --last: int              # only the newest n frames of history
  --topic (-T): string     # topic patterns: a.b, a.*, comma-separated
  --with-timestamp         # add each frame's timestamp
] {
  mut args = [(xs-addr)]
  if $follow { $args = ($args | append "--follow") }
  if $pulse != null { $args = ($args | append [--pulse ($pulse | into string)]) }
  if $new { $args = ($args | append "--new") }
  if $after != null { $args = ($args | append [--after $after]) }
  if $from != null { $args = ($args | append [--from $from]) }
  if $limit != null { $args = ($args | append [--limit ($limit | into string)]) }
  if $last != null { $args = ($args | append [--last ($last | into string)]) }
  if $topic != null { $args = ($args | append [--topic $topic]) }
  if $with_timestamp { $args = ($args | append "--with-timestamp") }
  ^xs cat ...$args | lines | each {|l| $l | from json }
}

# Append a frame; the input (nothing, text, binary, or a record stored as JSON) is its content.
export def .append [
  topic: string
  --meta: record           # metadata
  --ttl: string            # forever, ephemeral, time:<ms> or last:<n>
  --expect: string         # append only if the topic's newest frame is this id (or none)
  --key: string            # idempotency key
  --with-timestamp         # add the frame's timestamp
] {
  let input = $in
  mut args = [(xs-addr) $topic]
  if $meta != null { $args = ($args | append [--meta ($meta | to json -r)]) }
  if $ttl != null { $args = ($args | append [--ttl $ttl]) }
  if $expect != null { $args = ($args | append [--expect $expect]) }
  if $key != null { $args = ($args | append [--key $key]) }
  if $with_timestamp { $args = ($args | append "--with-timestamp") }
  let content = match ($input | describe) {
    "nothing" => ""
    $t if ($t starts-with "record") or ($t starts-with "list") or ($t starts-with "table") => ($input | to json -r)
    _ => $input
  }
  $content | ^xs append ...$args | from json
}

# The newest frame of a topic (or the newest n, as a list); --follow streams updates.
export def .last [
  topic?: string
  n?: int
  --follow (-f)
  --with-timestamp
] {
  mut args = [(xs-addr)]
  if $topic != null { $args = ($args | append $topic) }
  if $n != null { $args = ($args | append ($n | into string)) }
  if $follow { $args = ($args | append "--follow") }
  if $with_timestamp { $args = ($args | append "--with-timestamp") }
  let frames = (^xs last ...$args | lines | each {|l| $l | from json })
  if ($n == null or $n == 1) and not $follow { $frames | get -o 0 } else { $frames }
}

# The frame with this id.
export def .get [id: string, --with-timestamp] {
  if $with_timestamp { ^xs get (xs-addr) $id --with-timestamp | from json } else { ^xs get (xs-addr) $id | from json }
}

# Content by hash (or from a frame record): text when it is UTF-8, else binary.
export def .cas [hash?: any] {
  let h = if $hash == null { $in } else { $hash }
  let h = if ($h | describe | str starts-with "record") { $h.hash } else { $h }
  if $h == null { return null }
  let bytes = (^xs cas (xs-addr) $h | into binary)
  try { $bytes | decode utf-8 } catch { $bytes }
}

# Store the input as content (no frame) and return its hash.
export def .cas-post [] {
  $in | ^xs cas-post (xs-addr) | str trim
}

# Remove a frame (with --purge, its content too).
export def .remove [id: string, --purge] {
  if $purge { ^xs remove (xs-addr) $id --purge } else { ^xs remove (xs-addr) $id }
}

# Run a Nushell script in the daemon, against the live store.
export def .eval [script?: string, --file (-f): string] {
  let out = if $file != null { ^xs eval (xs-addr) $file } else if $script != null { ^xs eval (xs-addr) -c $script } else { $in | ^xs eval (xs-addr) - }
  $out
}
