# Warning, optimisation and sanitizer flags shared by every mambakit target.
add_library(mambakit_compile_options INTERFACE)
add_library(mambakit::compile_options ALIAS mambakit_compile_options)
target_compile_options(mambakit_compile_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>)
if(MAMBAKIT_NATIVE)
  target_compile_options(mambakit_compile_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
if(MAMBAKIT_SANITIZE)
  target_compile_options(mambakit_compile_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(mambakit_compile_options INTERFACE
    $<$<LINK_LANGUAGE:CXX>:-fsanitize=address,undefined>)
endif()
if(MAMBAKIT_FUZZ)
  # Coverage feedback for libFuzzer in every mambakit target; the fuzz programs link the driver.
  target_compile_options(mambakit_compile_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()
if(MAMBAKIT_TSAN)
  target_compile_options(mambakit_compile_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread -fno-omit-frame-pointer>)
  target_link_options(mambakit_compile_options INTERFACE $<$<LINK_LANGUAGE:CXX>:-fsanitize=thread>)
endif()
