/**
 * A container's own name, without the leading '/': `names` is `Names` of `GET /containers/json`,
 * which also lists the aliases other containers link it under ("/other/alias"). The ID `id` when
 * there is none.
 */
export function ownName(names: string[] | undefined, id: string): string {
  return (names?.find((n) => n.lastIndexOf('/') === 0) ?? id).replace(/^\//, '');
}
