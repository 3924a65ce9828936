// The durable writer: one save, from the "writing" row to the committed
// checkpoint, crash-safe at every instant (docs/DESIGN.md, "Save protocol").
// Its steps are the commit protocol's (commit.hpp); this class streams the
// bytes or hands the temp file to the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "catalog.hpp"
#include "commit.hpp"
#include "error.hpp"
#include "fsio.hpp"

namespace ckptdb {

class Save {
public:
    // Validates everything before touching the disk; then records the intent
    // and creates the temp file.
    static std::unique_ptr<Save> begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                       int64_t step, const std::optional<std::string> &name,
                                       const std::optional<std::string> &metadata);
    ~Save();

    void write(const void *data, size_t len);
    const std::string &temp_path();  // the caller writes the file itself
    int fd();                        // ... or through our descriptor
    Entry commit();
    void abort();

    int64_t id() const { return commit_->id(); }
    const std::string &name() const { return commit_->files()[0].name; }

private:
    enum class State { streaming, external, committed, aborted, failed };
    Save(std::shared_ptr<Catalog> cat, std::unique_ptr<Commit> commit)
        : cat_(std::move(cat)),
          commit_(std::move(commit)),
          temp_(commit_->files()[0].temp_name),
          temp_path_(cat_->dir().join(temp_)),
          out_(temp_path_) {}
    void check_usable(const char *what);
    // Removes what exists of the save and marks its row aborted; never throws.
    void cleanup(const std::string &why);
    void fail_with(const Error &e);

    std::shared_ptr<Catalog> cat_;
    State state_ = State::streaming;
    std::unique_ptr<Commit> commit_;
    std::string temp_, temp_path_;
    UniqueFd fd_;
    DurableWriter out_;
    int64_t renewed_ = 0;  // when the lease was last renewed (lease.hpp: renew_lease)
    int err_code_ = 0;
    std::string err_msg_;
};

}  // namespace ckptdb
