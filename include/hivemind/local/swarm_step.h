// SwarmStep adapters: what a LocalReducer's leader runs with the local average.
#ifndef HIVEMIND_LOCAL_SWARM_STEP_H_
#define HIVEMIND_LOCAL_SWARM_STEP_H_

#include "hivemind/averaging/averager.h"
#include "hivemind/export.h"
#include "hivemind/local/local_reducer.h"

namespace hivemind {

// A SwarmStep that runs one DecentralizedAverager step on the local average: it
// copies the average into the averager's tensors (all of them, flat, in order), runs
// averager->Step(options) with options.weight = the local group's summed weight,
// waits for it, and copies the swarm's average back. `result` (if not null) receives
// the step's result. Both pointers are not owned and must outlive the returned step.
//
// The step returns kInvalidArgument when the local average's size differs from the
// averager's total tensor size, or the averager step's error (StepHandle::Wait); on
// error the local average is left as it was.
HIVEMIND_EXPORT SwarmStep AveragerSwarmStep(DecentralizedAverager* averager,
                                            StepOptions options,
                                            StepResult* result = nullptr);

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_SWARM_STEP_H_
