// The component's `cache` import, for the Node runner: every lookup misses and nothing is
// kept, which turns the key-metadata cache off (the component asks KMS each time). A host
// that wants it provides get/set/delete over storage of its own, private to the user.
export function get(_key) {
  return undefined;
}
export function set(_key, _value) {}
// `delete` is a reserved word in JS; jco exports the WIT name as `delete`.
function remove(_key) {}
export { remove as delete };
