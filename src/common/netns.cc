// placeholder until the netns helpers land
