# A todo list served over HTTP by one handler: each request is an `http.request` frame, each
# answer an `http.response` frame the handler appends; the list is the handler's state.
#   xs serve ./store --http :8080
#   xs handler register ./store todo examples/todo.nu
#   curl localhost:8080/                         # the list as an HTML page, with a form
#   curl -d 'buy milk' localhost:8080/todos      # add one (201, the new item as JSON)
#   curl localhost:8080/todos                    # the list as JSON
#   curl -X POST localhost:8080/todos/1/done     # mark one done
#   curl -X DELETE localhost:8080/todos/1        # remove one (204)

# Answers request $req with $status and the input as the body.
def respond [req: string, status: int, type: string] {
  $in | .append http.response --meta {request_id: $req, status: $status, headers: {content-type: $type}}
}

def json-reply [req: string, status: int] {
  $in | to json -r | respond $req $status "application/json"
}

def page [todos: list] {
  let items = $todos | each {|t|
    let text = $t.text | str replace -a "&" "&amp;" | str replace -a "<" "&lt;"
    let mark = if $t.done { "done" } else { "open" }
    $"<li class=\"($mark)\">($text)</li>"
  } | str join ""
  $"<!doctype html><title>todo</title><h1>todo</h1><ul>($items)</ul>
<form method=\"post\" action=\"/todos\"><input name=\"text\"><button>add</button></form>"
}

{
  topics: "http.request"
  initial: {next: 1, todos: []}
  run: {|frame, state|
    let req = $frame.id
    let m = $frame.meta
    let parts = $m.path | split row "/" | where $it != ""
    let body = if $frame.hash == null { "" } else { .cas $frame.hash | into string }
    match [$m.method $parts] {
      ["GET" []] => {
        page $state.todos | respond $req 200 "text/html; charset=utf-8"
        {next: $state}
      }
      ["GET" ["todos"]] => {
        $state.todos | json-reply $req 200
        {next: $state}
      }
      ["POST" ["todos"]] => {
        # The page's form posts `text=...`; `curl -d 'buy milk'` posts the text itself.
        let form = try { $body | url split-query } catch { [] }
        let text = $form | where key == "text" | get value.0? | default $body | str trim
        if $text == "" {
          {error: "a todo needs some text"} | json-reply $req 400
          return {next: $state}
        }
        let item = {id: $state.next, text: $text, done: false}
        $item | json-reply $req 201
        {next: {next: ($state.next + 1), todos: ($state.todos | append $item)}}
      }
      ["POST" ["todos" $id "done"]] | ["DELETE" ["todos" $id]] => {
        let n = try { $id | into int } catch { -1 }
        let found = $state.todos | where id == $n
        if ($found | is-empty) {
          {error: $"no todo ($id)"} | json-reply $req 404
          return {next: $state}
        }
        if $m.method == "DELETE" {
          null | respond $req 204 "application/json"
          {next: ($state | update todos { where id != $n })}
        } else {
          let todos = $state.todos | each {|t| if $t.id == $n { $t | update done true } else { $t } }
          $todos | where id == $n | first | json-reply $req 200
          {next: ($state | update todos $todos)}
        }
      }
      _ => {
        {error: $"no route for ($m.method) ($m.path)"} | json-reply $req 404
        {next: $state}
      }
    }
  }
}
