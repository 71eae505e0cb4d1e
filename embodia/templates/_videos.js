// Videos load nothing until asked (preload="none"): hovering one plays it, leaving pauses it; its controls still work.
document.querySelectorAll("video[data-hover-play]").forEach(function (video) {
  video.addEventListener("mouseenter", function () { video.play().catch(function () {}); });
  video.addEventListener("mouseleave", function () { video.pause(); });
});
