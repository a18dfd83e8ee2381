#include "distill/teacher_text.h"

#include <gtest/gtest.h>

#include "engine/model_writer.h"
#include "util/thread_pool.h"

namespace hlm {
namespace {

TEST(TeacherText, RefusesAVocabularyWithoutChatMlTurns) {
  auto pair = make_tiny_pair(1);
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  ThreadPool pool(1);
  Context ctx(pair->llm, 1, 512, pool);
  const int64_t ids[] = {0};
  auto r =
      teacher_text(ctx, ids, TeacherTextOptions{}, [](TeacherSequence&&) { return ok_status(); });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("<|im_start|>"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace hlm
