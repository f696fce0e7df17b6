// metav1.Condition and the one way the operator changes a list of them: lastTransitionTime moves
// only when status flips, so watchers can tell how long something has been broken.

export type ConditionStatus = "True" | "False" | "Unknown";

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export type ConditionInput = Omit<Condition, "lastTransitionTime">;

/** The list with `next` set, keeping the old lastTransitionTime when status did not change. */
export function setCondition(existing: readonly Condition[] | undefined, next: ConditionInput, now: Date): Condition[] {
  const list = [...(existing ?? [])];
  const index = list.findIndex((c) => c.type === next.type);
  const previous = index === -1 ? undefined : list[index];
  const lastTransitionTime = previous && previous.status === next.status ? previous.lastTransitionTime : now.toISOString();
  const condition: Condition = { ...next, lastTransitionTime };
  if (index === -1) list.push(condition);
  else list[index] = condition;
  return list;
}

export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}
