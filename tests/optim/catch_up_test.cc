// CatchUp's transitions, one by one (the table in src/optim/catch_up.h).
#include "optim/catch_up.h"

#include <limits>

#include "gtest/gtest.h"

namespace hivemind {
namespace internal {
namespace {

using Load = CatchUp::Load;
constexpr int64_t kAnyEpoch = std::numeric_limits<int64_t>::min();

TEST(CatchUp, InStepWithTheSwarmTrains) {
  CatchUp c;
  EXPECT_EQ(c.Next(5, 5, 0, false).load, Load::kNone);
  EXPECT_EQ(c.Next(4, 5, 0, false).load, Load::kNone);  // the view of the swarm lags
}

TEST(CatchUp, BehindTheSwarmCatchesUpAtAnyEpoch) {
  CatchUp c;
  const CatchUp::Plan plan = c.Next(7, 5, 0, false);
  EXPECT_EQ(plan.load, Load::kCatchUp);
  EXPECT_EQ(plan.min_epoch, kAnyEpoch);
}

TEST(CatchUp, AllowedLagIsNotBehind) {
  CatchUp c;
  EXPECT_EQ(c.Next(6, 5, 1, false).load, Load::kNone);
  EXPECT_EQ(c.Next(7, 5, 1, false).load, Load::kCatchUp);
}

TEST(CatchUp, MissedRoundResyncsOnceWithTheMissedEpoch) {
  CatchUp c;
  c.RoundFailed();
  EXPECT_TRUE(c.missed_round());
  const CatchUp::Plan plan = c.Next(5, 5, 0, false);
  EXPECT_EQ(plan.load, Load::kResync);
  EXPECT_EQ(plan.min_epoch, 4);
  EXPECT_FALSE(c.missed_round());
  EXPECT_EQ(c.Next(5, 5, 0, false).load, Load::kNone);  // consumed
}

TEST(CatchUp, MissedRoundIsForgottenWhileARoundIsInFlight) {
  CatchUp c;
  c.RoundFailed();
  EXPECT_EQ(c.Next(5, 5, 1, true).load, Load::kNone);
  EXPECT_FALSE(c.missed_round());
  EXPECT_EQ(c.Next(5, 5, 1, false).load, Load::kNone);
}

TEST(CatchUp, BeingBehindOutranksAMissedRound) {
  CatchUp c;
  c.RoundFailed();
  EXPECT_EQ(c.Next(9, 5, 0, false).load, Load::kCatchUp);
  EXPECT_FALSE(c.missed_round());
}

TEST(CatchUp, FailedCatchUpJumpsToTheSwarmAndRetriesNextEpoch) {
  CatchUp c;
  const CatchUp::Plan plan = c.Next(8, 5, 0, false);
  EXPECT_EQ(c.Loaded(plan, false, 8, 5, 0), 8);
  EXPECT_EQ(c.reload_at(), 9u);
  // At the jumped-to epoch, level with the swarm: nothing due yet.
  EXPECT_EQ(c.Next(8, 8, 0, false).load, Load::kNone);
  // The swarm reaches the reload epoch (this peer with it): due.
  EXPECT_EQ(c.Next(9, 9, 0, false).load, Load::kCatchUp);
}

TEST(CatchUp, StaleStateJumpsToTheSwarmLikeAFailure) {
  CatchUp c;
  const CatchUp::Plan plan = c.Next(8, 2, 0, false);
  // Loaded, but the donors' state is of epoch 5: still behind epoch 8.
  EXPECT_EQ(c.Loaded(plan, true, 8, 5, 0), 8);
  EXPECT_EQ(c.reload_at(), 9u);
}

TEST(CatchUp, SuccessfulCatchUpClearsTheReload) {
  CatchUp c;
  c.Loaded(c.Next(8, 5, 0, false), false, 8, 5, 0);
  ASSERT_EQ(c.reload_at(), 9u);
  const CatchUp::Plan plan = c.Next(9, 8, 0, false);
  ASSERT_EQ(plan.load, Load::kCatchUp);
  EXPECT_EQ(c.Loaded(plan, true, 9, 9, 0), std::nullopt);
  EXPECT_EQ(c.reload_at(), 0u);
  EXPECT_EQ(c.Next(9, 9, 0, false).load, Load::kNone);
}

TEST(CatchUp, ResyncOutcomes) {
  CatchUp c;
  c.Loaded(c.Next(8, 5, 0, false), false, 8, 5, 0);  // reload due at 9
  c.RoundFailed();
  const CatchUp::Plan plan = c.Next(8, 8, 0, false);
  ASSERT_EQ(plan.load, Load::kResync);
  // A failed resync changes nothing: train on, the reload still due.
  EXPECT_EQ(c.Loaded(plan, false, 8, 8, 0), std::nullopt);
  EXPECT_EQ(c.reload_at(), 9u);
  // A successful one clears it.
  c.RoundFailed();
  EXPECT_EQ(c.Loaded(c.Next(8, 8, 0, false), true, 8, 8, 0), std::nullopt);
  EXPECT_EQ(c.reload_at(), 0u);
}

TEST(CatchUp, LastEpochFailedLastsUntilTheEpochEnds) {
  CatchUp c;
  EXPECT_FALSE(c.last_epoch_failed());
  c.RoundFailed();
  c.Next(5, 5, 0, false);  // the resync does not clear it
  EXPECT_TRUE(c.last_epoch_failed());
  c.EpochEnded();
  EXPECT_FALSE(c.last_epoch_failed());
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
